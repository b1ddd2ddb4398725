import { createRoute } from '@hono/zod-openapi';
import { EditMessageBody, EmojiSchema, MessageChangeReply, MessageSchema, PageMetaSchema, PageQuery, ReadBody, ReadResultSchema, SendMessageBody, pageOf } from '@chat/contracts';
import { z } from 'zod';
import type { Bus } from '../bus';
import type { Context } from 'hono';
import { firstValues, jsonBody, quotaHeaders, routeApp, type GatewayEnv } from '../http';
import { BODY_ERRORS, ConversationIdParam, errors, jsonContent, MessageIdParam, ok, PAGE_ERRORS } from '../openapi';
import { rateLimited, type RateLimits } from '../security/rate-limits';
import type { SendPath } from '../send-path';

const list = createRoute({
  method: 'get',
  path: '/conversations/{conversationId}/messages',
  tags: ['Messages'],
  summary: 'Messages of a conversation, newest first',
  request: { params: ConversationIdParam, query: firstValues(PageQuery) },
  responses: { 200: ok('a page of messages', z.array(MessageSchema), { meta: PageMetaSchema }), ...errors('CONVERSATION_NOT_FOUND', ...PAGE_ERRORS) },
});

const send = createRoute({
  method: 'post',
  path: '/conversations/{conversationId}/messages',
  tags: ['Messages'],
  summary: 'Send a message',
  description:
    'A repeated `clientMessageId` from the same sender in the conversation returns the original with 200 and delivers nothing again, for ever; ' +
    'with other content (compared after trimming) it is 409 IDEMPOTENCY_CONFLICT. 30 sends a minute per user, REST and WebSocket together.',
  middleware: [jsonBody(SendMessageBody)] as const,
  request: { params: ConversationIdParam, body: jsonContent(SendMessageBody) },
  responses: {
    201: ok('sent', MessageSchema, { limited: true }),
    200: ok('a repeated clientMessageId: the original message, nothing sent again', MessageSchema, { limited: true }),
    ...errors('CONVERSATION_NOT_FOUND', 'BLOCKED', 'IDEMPOTENCY_CONFLICT', ...BODY_ERRORS),
  },
});

const read = createRoute({
  method: 'post',
  path: '/conversations/{conversationId}/read',
  tags: ['Messages'],
  summary: "Mark the other user's messages read, up to and including messageId (or all)",
  description: 'The read marker only moves forward: an older messageId marks nothing and pushes no event. The body may be empty.',
  middleware: [jsonBody(ReadBody, { optional: true })] as const,
  request: { params: ConversationIdParam, body: jsonContent(ReadBody, false) },
  responses: {
    200: ok('how many were marked, and what stays unread here', ReadResultSchema),
    ...errors('CONVERSATION_NOT_FOUND', 'MESSAGE_NOT_FOUND', ...BODY_ERRORS),
  },
});

const get = createRoute({
  method: 'get',
  path: '/messages/{messageId}',
  tags: ['Messages'],
  summary: 'One message',
  request: { params: MessageIdParam },
  responses: { 200: ok('the message', MessageSchema), ...errors('MESSAGE_NOT_FOUND') },
});

const MessagePathParams = ConversationIdParam.extend(MessageIdParam.shape);
const ReactionPathParams = MessagePathParams.extend({
  emoji: EmojiSchema.openapi({ description: 'one emoji grapheme, URL-encoded (%F0%9F%91%8D for 👍)' }),
});
const CHANGE_ERRORS = ['CONVERSATION_NOT_FOUND', 'MESSAGE_NOT_FOUND'] as const;

const edit = createRoute({
  method: 'patch',
  path: '/conversations/{conversationId}/messages/{messageId}',
  tags: ['Messages'],
  summary: 'Edit a message you sent',
  description:
    'Only the sender, within MESSAGE_EDIT_WINDOW_S (default 900 s) of createdAt. The same content again answers 200 and changes nothing. ' +
    'Emits message.updated to both users; counts as a send for rate limits.',
  middleware: [jsonBody(EditMessageBody)] as const,
  request: { params: MessagePathParams, body: jsonContent(EditMessageBody) },
  responses: {
    200: ok('the message with its new content and editedAt', MessageSchema, { limited: true }),
    ...errors(...CHANGE_ERRORS, 'NOT_SENDER', 'EDIT_WINDOW_PASSED', 'BLOCKED', 'MESSAGE_DELETED', ...BODY_ERRORS),
  },
});

const remove = createRoute({
  method: 'delete',
  path: '/conversations/{conversationId}/messages/{messageId}',
  tags: ['Messages'],
  summary: 'Delete a message you sent, for both users',
  description:
    'Only the sender, at any time, blocked or not. The message becomes a tombstone (content "", deletedAt set, no reactions) and its content is removed from storage; ' +
    'emits message.deleted (and unread.updated to the recipient if it was unread). Deleting it again answers the same tombstone and emits nothing.',
  request: { params: MessagePathParams },
  responses: { 200: ok('the tombstone', MessageSchema), ...errors(...CHANGE_ERRORS, 'NOT_SENDER') },
});

const react = createRoute({
  method: 'put',
  path: '/conversations/{conversationId}/messages/{messageId}/reactions/{emoji}',
  tags: ['Messages'],
  summary: 'React to a message',
  description:
    'Either participant; at most 10 different emoji per user per message. A reaction already there answers 200 and emits nothing. ' +
    'Emits reaction.updated to both users. Limited to RATE_LIMIT_REACTIONS_PER_MIN (default 60) per user, adding and removing, REST and WebSocket together.',
  request: { params: ReactionPathParams },
  responses: {
    200: ok('the message with its reactions', MessageSchema, { limited: true }),
    ...errors(...CHANGE_ERRORS, 'VALIDATION_FAILED', 'BLOCKED', 'MESSAGE_DELETED', 'TOO_MANY_REACTIONS'),
  },
});

const unreact = createRoute({
  method: 'delete',
  path: '/conversations/{conversationId}/messages/{messageId}/reactions/{emoji}',
  tags: ['Messages'],
  summary: 'Take back your reaction',
  description: 'None there answers 200 and emits nothing. Counts against the reaction limit.',
  request: { params: ReactionPathParams },
  responses: { 200: ok('the message with its reactions', MessageSchema, { limited: true }), ...errors(...CHANGE_ERRORS, 'VALIDATION_FAILED') },
});

/** Message routes under /conversations/:conversationId and /messages. */
export function messageRoutes(bus: Bus, limits: RateLimits, sends: SendPath) {
  const app = routeApp();

  app.openapi(list, async (c) => {
    const q = c.req.valid('query');
    const { conversationId } = c.req.valid('param');
    const page = await bus.call(c, bus.s.messages.list, { conversationId, cursor: q.cursor, limit: q.limit }, pageOf(MessageSchema));
    return c.json({ data: page.items, meta: page.meta }, 200);
  });

  app.openapi(send, async (c) => {
    const body = c.req.valid('json');
    const { conversationId } = c.req.valid('param');
    // Counted once the request is a well-formed send: a typo costs no quota.
    const quota = await limits.send.consume(c.get('principal').id);
    quotaHeaders(c, quota);
    if (!quota.allowed) throw rateLimited('message sends', quota.resetMs);
    const r = await sends.send({ actor: c.get('principal').id, conversationId, ...body }, c.get('requestId'));
    return c.json({ data: r.message }, r.created ? 201 : 200);
  });

  app.openapi(read, async (c) => {
    const r = await bus.call(c, bus.s.messages.read, { ...c.req.valid('param'), ...c.req.valid('json') }, ReadResultSchema);
    return c.json({ data: r }, 200);
  });

  app.openapi(edit, async (c) => {
    const { content } = c.req.valid('json');
    const quota = await limits.send.consume(c.get('principal').id);
    quotaHeaders(c, quota);
    if (!quota.allowed) throw rateLimited('message sends', quota.resetMs);
    const r = await bus.call(c, bus.s.messages.edit, { ...c.req.valid('param'), content }, MessageChangeReply);
    return c.json({ data: r.message }, 200);
  });

  app.openapi(remove, async (c) => {
    const r = await bus.call(c, bus.s.messages.delete, c.req.valid('param'), MessageChangeReply);
    return c.json({ data: r.message }, 200);
  });

  const reaction = (on: boolean) => async (c: Context<GatewayEnv>, params: z.output<typeof ReactionPathParams>) => {
    const quota = await limits.reactions.consume(c.get('principal').id);
    quotaHeaders(c, quota);
    if (!quota.allowed) throw rateLimited('reactions', quota.resetMs);
    return (await bus.call(c, bus.s.messages.react, { ...params, on }, MessageChangeReply)).message;
  };
  const add = reaction(true);
  const take = reaction(false);
  app.openapi(react, async (c) => c.json({ data: await add(c, c.req.valid('param')) }, 200));
  app.openapi(unreact, async (c) => c.json({ data: await take(c, c.req.valid('param')) }, 200));

  app.openapi(get, async (c) => c.json({ data: await bus.call(c, bus.s.messages.get, c.req.valid('param'), MessageSchema) }, 200));

  return app;
}
