import { Hono } from 'hono';
import { ConversationSchema, GetOrCreateConversationReply, PageQuery, UnreadCountSchema, UsernameSchema, pageOf, ChatError, isChatError } from '@chat/contracts';
import { z } from 'zod';
import type { GatewayEnv } from '../http';
import { parseOrThrow, pathId, quotaHeaders } from '../http';
import type { Bus } from '../bus';
import { rateLimited, type RateLimits } from '../security/rate-limits';

export function conversationRoutes(bus: Bus, limits: RateLimits) {
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
    // Only calls that create count (SPEC 6): look the pair up first, and spend
    // quota only when it does not exist yet. Opening an existing chat is never limited.
    const lookup = () =>
      bus.call(c, bus.s.conversations.getOrCreate, { username, create: false }, GetOrCreateConversationReply).catch((err: unknown) => {
        if (isChatError(err) && err.code === 'CONVERSATION_NOT_FOUND') return undefined;
        throw err;
      });
    const key = c.get('principal').id;
    const existing = async (found: z.output<typeof GetOrCreateConversationReply>) => {
      const state = await limits.createConversation.peek(key);
      quotaHeaders(c, state ?? { limit: limits.createConversation.points, remaining: limits.createConversation.points, resetMs: 0 });
      return c.json({ data: found.conversation, meta: { created: false } }, 200);
    };
    const found = await lookup();
    if (found) return existing(found);
    const quota = await limits.createConversation.consume(key);
    quotaHeaders(c, quota);
    if (!quota.allowed) {
      // A concurrent call may have created this very pair meanwhile: then it is an open, not a creation.
      const createdMeanwhile = await lookup();
      if (createdMeanwhile) return existing(createdMeanwhile);
      throw rateLimited('conversation creation', quota.resetMs);
    }
    const r = await bus.call(c, bus.s.conversations.getOrCreate, { username }, GetOrCreateConversationReply);
    if (!r.created) await limits.createConversation.refund(key); // a concurrent call created it first
    return c.json({ data: r.conversation, meta: { created: r.created } }, r.created ? 201 : 200);
  });

  app.get('/:conversationId', async (c) =>
    c.json({ data: await bus.call(c, bus.s.conversations.get, { conversationId: pathId(c, 'conversationId', 'CONVERSATION_NOT_FOUND') }, ConversationSchema) }),
  );

  return app;
}
