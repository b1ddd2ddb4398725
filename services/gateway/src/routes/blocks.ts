import { Hono } from 'hono';
import { BlockSchema, BlockStatusSchema, CreateBlockBody, PageQuery, pageOf } from '@chat/contracts';
import { z } from 'zod';
import type { Bus } from '../bus';
import { jsonBody, parseOrThrow, pathUsername, type GatewayEnv } from '../http';

export function blockRoutes(bus: Bus) {
  const app = new Hono<GatewayEnv>();

  app.post('/', async (c) => {
    const body = parseOrThrow(CreateBlockBody, await jsonBody(c));
    return c.json({ data: await bus.call(c, bus.s.blocks.create, body, BlockSchema) }, 201);
  });

  app.get('/', async (c) => {
    const q = parseOrThrow(PageQuery, c.req.query());
    const page = await bus.call(c, bus.s.blocks.list, { cursor: q.cursor, limit: q.limit }, pageOf(BlockSchema));
    return c.json({ data: page.items, meta: page.meta });
  });

  app.get('/status/:username', async (c) =>
    c.json({ data: await bus.call(c, bus.s.blocks.statusByUsername, { username: pathUsername(c) }, BlockStatusSchema) }),
  );

  app.delete('/:username', async (c) => {
    await bus.call(c, bus.s.blocks.remove, { username: pathUsername(c) }, z.null());
    return c.body(null, 204);
  });

  return app;
}
