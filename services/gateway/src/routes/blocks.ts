import { createRoute } from '@hono/zod-openapi';
import { BlockSchema, BlockStatusSchema, CreateBlockBody, PageMetaSchema, PageQuery, pageOf } from '@chat/contracts';
import { z } from 'zod';
import type { Bus } from '../bus';
import { firstValues, jsonBody, routeApp } from '../http';
import { BODY_ERRORS, errors, jsonContent, ok, PAGE_ERRORS, UsernameParam } from '../openapi';

const create = createRoute({
  method: 'post',
  path: '/',
  tags: ['Blocks'],
  summary: 'Block a user',
  middleware: [jsonBody(CreateBlockBody)] as const,
  request: { body: jsonContent(CreateBlockBody) },
  responses: { 201: ok('blocked', BlockSchema), ...errors('ALREADY_BLOCKED', 'USER_NOT_FOUND', 'CANNOT_BLOCK_SELF', ...BODY_ERRORS) },
});

const remove = createRoute({
  method: 'delete',
  path: '/{username}',
  tags: ['Blocks'],
  summary: 'Unblock a user',
  request: { params: UsernameParam },
  responses: { 204: ok('unblocked'), ...errors('NOT_BLOCKED', 'USER_NOT_FOUND') },
});

const list = createRoute({
  method: 'get',
  path: '/',
  tags: ['Blocks'],
  summary: 'The users the caller blocked, newest first',
  request: { query: firstValues(PageQuery) },
  responses: { 200: ok('a page of blocks', z.array(BlockSchema), { meta: PageMetaSchema }), ...errors(...PAGE_ERRORS) },
});

const status = createRoute({
  method: 'get',
  path: '/status/{username}',
  tags: ['Blocks'],
  summary: 'Whether either user blocks the other',
  request: { params: UsernameParam },
  responses: { 200: ok('the block status', BlockStatusSchema), ...errors('USER_NOT_FOUND') },
});

export function blockRoutes(bus: Bus) {
  const app = routeApp();

  app.openapi(create, async (c) => c.json({ data: await bus.call(c, bus.s.blocks.create, c.req.valid('json'), BlockSchema) }, 201));

  app.openapi(remove, async (c) => {
    await bus.call(c, bus.s.blocks.remove, c.req.valid('param'), z.null());
    return c.body(null, 204);
  });

  app.openapi(list, async (c) => {
    const q = c.req.valid('query');
    const page = await bus.call(c, bus.s.blocks.list, { cursor: q.cursor, limit: q.limit }, pageOf(BlockSchema));
    return c.json({ data: page.items, meta: page.meta }, 200);
  });

  app.openapi(status, async (c) => c.json({ data: await bus.call(c, bus.s.blocks.statusByUsername, c.req.valid('param'), BlockStatusSchema) }, 200));

  return app;
}
