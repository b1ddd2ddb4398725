import { createRoute } from '@hono/zod-openapi';
import { ConversationSchema, GetOrCreateConversationReply, PageMetaSchema, PageQuery, UnreadCountSchema, pageOf, isChatError } from '@chat/contracts';
import { z } from 'zod';
import { firstValues, quotaHeaders, routeApp } from '../http';
import { ConversationIdParam, errors, ok, PAGE_ERRORS, UsernameParam } from '../openapi';
import type { Bus } from '../bus';
import { rateLimited, type RateLimits } from '../security/rate-limits';

const list = createRoute({
  method: 'get',
  path: '/',
  tags: ['Conversations'],
  summary: "The caller's conversations, most recent activity first",
  request: { query: firstValues(PageQuery) },
  responses: { 200: ok('a page of conversations', z.array(ConversationSchema), { meta: PageMetaSchema }), ...errors(...PAGE_ERRORS) },
});

const unreadCount = createRoute({
  method: 'get',
  path: '/unread-count',
  tags: ['Conversations'],
  summary: 'Unread messages, and conversations with any unread',
  responses: { 200: ok('the totals', UnreadCountSchema), ...errors() },
});

const withUser = createRoute({
  method: 'get',
  path: '/with/{username}',
  tags: ['Conversations'],
  summary: 'Get or create the 1:1 conversation with a user',
  description: 'Two concurrent calls for one pair create one conversation. Only calls that create count against the creation limit (10 a minute).',
  request: { params: UsernameParam },
  responses: {
    200: ok('it existed', ConversationSchema, { meta: z.object({ created: z.literal(false) }), limited: true }),
    201: ok('it was created', ConversationSchema, { meta: z.object({ created: z.literal(true) }), limited: true }),
    ...errors('USER_NOT_FOUND', 'CANNOT_CHAT_WITH_SELF'),
  },
});

const get = createRoute({
  method: 'get',
  path: '/{conversationId}',
  tags: ['Conversations'],
  summary: 'One conversation',
  request: { params: ConversationIdParam },
  responses: { 200: ok('the conversation', ConversationSchema), ...errors('CONVERSATION_NOT_FOUND') },
});

export function conversationRoutes(bus: Bus, limits: RateLimits) {
  const app = routeApp();

  app.openapi(list, async (c) => {
    const q = c.req.valid('query');
    const page = await bus.call(c, bus.s.conversations.list, { cursor: q.cursor, limit: q.limit }, pageOf(ConversationSchema));
    return c.json({ data: page.items, meta: page.meta }, 200);
  });

  app.openapi(unreadCount, async (c) => c.json({ data: await bus.call(c, bus.s.messages.unreadCount, {}, UnreadCountSchema) }, 200));

  app.openapi(withUser, async (c) => {
    const { username } = c.req.valid('param');
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
      return c.json({ data: found.conversation, meta: { created: false as const } }, 200);
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
    return r.created
      ? c.json({ data: r.conversation, meta: { created: true as const } }, 201)
      : c.json({ data: r.conversation, meta: { created: false as const } }, 200);
  });

  app.openapi(get, async (c) =>
    c.json({ data: await bus.call(c, bus.s.conversations.get, { conversationId: c.req.valid('param').conversationId }, ConversationSchema) }, 200),
  );

  return app;
}
