import { Hono } from 'hono';
import { MessageSchema, PageQuery, ReadBody, ReadResultSchema, SendMessageBody, pageOf } from '@chat/contracts';
import type { Bus } from '../bus';
import { jsonBody, parseOrThrow, pathId, quotaHeaders, type GatewayEnv } from '../http';
import { rateLimited, type RateLimits } from '../security/rate-limits';
import type { SendPath } from '../send-path';


/** Message routes under /conversations/:conversationId and /messages. */
export function messageRoutes(bus: Bus, limits: RateLimits, sends: SendPath) {
  const app = new Hono<GatewayEnv>();

  app.get('/conversations/:conversationId/messages', async (c) => {
    const q = parseOrThrow(PageQuery, c.req.query());
    const page = await bus.call(
      c,
      bus.s.messages.list,
      { conversationId: pathId(c, 'conversationId', 'CONVERSATION_NOT_FOUND'), cursor: q.cursor, limit: q.limit },
      pageOf(MessageSchema),
    );
    return c.json({ data: page.items, meta: page.meta });
  });

  app.post('/conversations/:conversationId/messages', async (c) => {
    const body = parseOrThrow(SendMessageBody, await jsonBody(c));
    const conversationId = pathId(c, 'conversationId', 'CONVERSATION_NOT_FOUND');
    // Counted once the request is a well-formed send: a typo costs no quota.
    const quota = await limits.send.consume(c.get('principal').id);
    quotaHeaders(c, quota);
    if (!quota.allowed) throw rateLimited('message sends', quota.resetMs);
    const r = await sends.send({ actor: c.get('principal').id, conversationId, ...body }, c.get('requestId'));
    return c.json({ data: r.message }, r.created ? 201 : 200);
  });

  app.post('/conversations/:conversationId/read', async (c) => {
    const body = parseOrThrow(ReadBody, await jsonBody(c, { optional: true }));
    const r = await bus.call(c, bus.s.messages.read, { conversationId: pathId(c, 'conversationId', 'CONVERSATION_NOT_FOUND'), ...body }, ReadResultSchema);
    return c.json({ data: r });
  });

  app.get('/messages/:messageId', async (c) =>
    c.json({ data: await bus.call(c, bus.s.messages.get, { messageId: pathId(c, 'messageId', 'MESSAGE_NOT_FOUND') }, MessageSchema) }),
  );

  return app;
}
