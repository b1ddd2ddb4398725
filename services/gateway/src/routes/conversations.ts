import { Hono } from 'hono';
import { ConversationSchema, PageQuery, UnreadCountSchema, UsernameSchema, pageOf, ChatError } from '@chat/contracts';
import { z } from 'zod';
import type { GatewayEnv } from '../http';
import { parseOrThrow, pathId } from '../http';
import type { Bus } from '../bus';

const Created = z.object({ conversation: ConversationSchema, created: z.boolean() });

export function conversationRoutes(bus: Bus) {
  const app = new Hono<GatewayEnv>();

  app.get('/', async (c) => {
    const q = parseOrThrow(PageQuery, c.req.query());
    const page = await bus.call(c, bus.s.conversations.list, { cursor: q.cursor, limit: q.limit }, pageOf(ConversationSchema));
    return c.json({ data: page.items, meta: page.meta });
  });

  app.get('/unread-count', async (c) => c.json({ data: await bus.call(c, bus.s.messages.unreadCount, {}, UnreadCountSchema) }));

  app.get('/with/:username', async (c) => {
    const username = c.req.param('username');
    if (!UsernameSchema.safeParse(username).success) throw new ChatError('USER_NOT_FOUND', `no user named ${username}`);
    const r = await bus.call(c, bus.s.conversations.getOrCreate, { username }, Created);
    return c.json({ data: r.conversation, meta: { created: r.created } }, r.created ? 201 : 200);
  });

  app.get('/:conversationId', async (c) =>
    c.json({ data: await bus.call(c, bus.s.conversations.get, { conversationId: pathId(c, 'conversationId', 'CONVERSATION_NOT_FOUND') }, ConversationSchema) }),
  );

  return app;
}
