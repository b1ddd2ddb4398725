import { OpenAPIRegistry, OpenApiGeneratorV31, type RouteConfig } from '@asteasolutions/zod-to-openapi';
import { z } from 'zod';
import {
  BlockSchema,
  BlockStatusSchema,
  ConversationSchema,
  CreateBlockBody,
  DurableEventSchema,
  ErrorCode,
  errorStatus,
  EventsQuery,
  MessageSchema,
  NotificationPreferencesSchema,
  PageMetaSchema,
  PageQuery,
  PreferencesBody,
  PresenceQuery,
  PresenceSchema,
  ReadBody,
  ReadResultSchema,
  SendMessageBody,
  UnreadCountSchema,
  UserSchema,
  WsTicketSchema,
} from '@chat/contracts';

import { DevTokenBody, DevTokenSchema, DevUserSchema } from './dev-sign-in';

// `.openapi()` works here because @chat/contracts (imported above) extends zod first (contracts/src/zod.ts).

type Method = 'get' | 'post' | 'put' | 'delete';

/** One REST route as the document describes it. Paths are relative to /api/chat, in OpenAPI's `{param}` form. */
export interface RouteDoc {
  method: Method;
  path: string;
  summary: string;
  description?: string;
  tag: 'Conversations' | 'Messages' | 'Events' | 'Blocks' | 'Account' | 'WebSocket' | 'Reference' | 'Development';
  /** Every route needs a bearer token except the reference itself and development sign-in. */
  auth?: false;
  params?: z.ZodObject;
  query?: z.ZodType;
  body?: { schema: z.ZodType; required?: false };
  /** The success answers: status → description and `data` (and `meta`) schema. */
  ok: Record<number, { description: string; data?: z.ZodType; meta?: z.ZodType; raw?: 'html' | 'json' }>;
  /** The route's own error codes; the ones every authenticated route can give are added. */
  errors?: ErrorCode[];
  /** Sends the RateLimit-* headers (SPEC 6). */
  limited?: boolean;
}

const id = (name: string, description: string) => z.object({ [name]: z.string().openapi({ description }) });
const conversationId = id('conversationId', 'a conversation the caller takes part in (any other answers 404, as an unknown one does)');
const username = id('username', 'a username, matched case-insensitively');
const BODY_ERRORS: ErrorCode[] = ['VALIDATION_FAILED', 'UNSUPPORTED_MEDIA_TYPE', 'PAYLOAD_TOO_LARGE'];
const PAGE_ERRORS: ErrorCode[] = ['VALIDATION_FAILED', 'INVALID_CURSOR'];
/** What any authenticated request can meet, whatever the route. */
const AUTH_ERRORS: ErrorCode[] = ['UNAUTHORIZED', 'IP_BLOCKED', 'RATE_LIMITED', 'SERVICE_UNAVAILABLE', 'INTERNAL'];
const EventsMeta = z.object({
  nextCursor: z.string().nullable().openapi({ description: 'the last seq of the page, to pass as the next `since`' }),
  hasMore: z.boolean(),
  latestSeq: z.number().int().openapi({ description: "the caller's latest durable seq" }),
});

/** Every REST route of the gateway. The route-drift test holds this list and the gateway's router equal. */
export const ROUTES: RouteDoc[] = [
  {
    method: 'get',
    path: '/conversations',
    tag: 'Conversations',
    summary: "The caller's conversations, most recent activity first",
    query: PageQuery,
    ok: { 200: { description: 'a page of conversations', data: z.array(ConversationSchema), meta: PageMetaSchema } },
    errors: PAGE_ERRORS,
  },
  {
    method: 'get',
    path: '/conversations/unread-count',
    tag: 'Conversations',
    summary: 'Unread messages, and conversations with any unread',
    ok: { 200: { description: 'the totals', data: UnreadCountSchema } },
  },
  {
    method: 'get',
    path: '/conversations/with/{username}',
    tag: 'Conversations',
    summary: 'Get or create the 1:1 conversation with a user',
    description: 'Two concurrent calls for one pair create one conversation. Only calls that create count against the creation limit (10 a minute).',
    params: username,
    ok: {
      200: { description: 'it existed', data: ConversationSchema, meta: z.object({ created: z.literal(false) }) },
      201: { description: 'it was created', data: ConversationSchema, meta: z.object({ created: z.literal(true) }) },
    },
    errors: ['USER_NOT_FOUND', 'CANNOT_CHAT_WITH_SELF'],
    limited: true,
  },
  {
    method: 'get',
    path: '/conversations/{conversationId}',
    tag: 'Conversations',
    summary: 'One conversation',
    params: conversationId,
    ok: { 200: { description: 'the conversation', data: ConversationSchema } },
    errors: ['CONVERSATION_NOT_FOUND'],
  },
  {
    method: 'get',
    path: '/conversations/{conversationId}/messages',
    tag: 'Messages',
    summary: 'Messages of a conversation, newest first',
    params: conversationId,
    query: PageQuery,
    ok: { 200: { description: 'a page of messages', data: z.array(MessageSchema), meta: PageMetaSchema } },
    errors: ['CONVERSATION_NOT_FOUND', ...PAGE_ERRORS],
  },
  {
    method: 'post',
    path: '/conversations/{conversationId}/messages',
    tag: 'Messages',
    summary: 'Send a message',
    description:
      'A repeated `clientMessageId` from the same sender in the conversation returns the original with 200 and delivers nothing again, for ever; ' +
      'with other content (compared after trimming) it is 409 IDEMPOTENCY_CONFLICT. 30 sends a minute per user, REST and WebSocket together.',
    params: conversationId,
    body: { schema: SendMessageBody },
    ok: {
      201: { description: 'sent', data: MessageSchema },
      200: { description: 'a repeated clientMessageId: the original message, nothing sent again', data: MessageSchema },
    },
    errors: ['CONVERSATION_NOT_FOUND', 'BLOCKED', 'IDEMPOTENCY_CONFLICT', ...BODY_ERRORS],
    limited: true,
  },
  {
    method: 'post',
    path: '/conversations/{conversationId}/read',
    tag: 'Messages',
    summary: "Mark the other user's messages read, up to and including messageId (or all)",
    description: 'The read marker only moves forward: an older messageId marks nothing and pushes no event. The body may be empty.',
    params: conversationId,
    body: { schema: ReadBody, required: false },
    ok: { 200: { description: 'how many were marked, and what stays unread here', data: ReadResultSchema } },
    errors: ['CONVERSATION_NOT_FOUND', 'MESSAGE_NOT_FOUND', ...BODY_ERRORS],
  },
  {
    method: 'get',
    path: '/events',
    tag: 'Events',
    summary: "The caller's durable events after `since`, in order",
    description: 'The events a WebSocket carries (`message.new`, `message.read`, `unread.updated`), each with its per-user `seq`. See docs/websocket.md.',
    query: EventsQuery,
    ok: { 200: { description: 'a page of events', data: z.array(DurableEventSchema), meta: EventsMeta } },
    errors: ['VALIDATION_FAILED', 'RESYNC_REQUIRED'],
  },
  {
    method: 'get',
    path: '/messages/{messageId}',
    tag: 'Messages',
    summary: 'One message',
    params: id('messageId', 'a message of a conversation the caller takes part in'),
    ok: { 200: { description: 'the message', data: MessageSchema } },
    errors: ['MESSAGE_NOT_FOUND'],
  },
  {
    method: 'post',
    path: '/ws-ticket',
    tag: 'WebSocket',
    summary: 'A single-use ticket for the WebSocket upgrade',
    description:
      'Valid 30 s (never past the token), works once on any gateway instance: connect with `/api/chat/ws?ticket=<ticket>`, so a browser need not put its long-lived token in a URL. ' +
      'Limited per client IP (60 a minute by default).',
    ok: { 200: { description: 'the ticket', data: WsTicketSchema } },
    limited: true,
  },
  {
    method: 'post',
    path: '/blocks',
    tag: 'Blocks',
    summary: 'Block a user',
    body: { schema: CreateBlockBody },
    ok: { 201: { description: 'blocked', data: BlockSchema } },
    errors: ['ALREADY_BLOCKED', 'USER_NOT_FOUND', 'CANNOT_BLOCK_SELF', ...BODY_ERRORS],
  },
  {
    method: 'delete',
    path: '/blocks/{username}',
    tag: 'Blocks',
    summary: 'Unblock a user',
    params: username,
    ok: { 204: { description: 'unblocked' } },
    errors: ['NOT_BLOCKED', 'USER_NOT_FOUND'],
  },
  {
    method: 'get',
    path: '/blocks',
    tag: 'Blocks',
    summary: 'The users the caller blocked, newest first',
    query: PageQuery,
    ok: { 200: { description: 'a page of blocks', data: z.array(BlockSchema), meta: PageMetaSchema } },
    errors: PAGE_ERRORS,
  },
  {
    method: 'get',
    path: '/blocks/status/{username}',
    tag: 'Blocks',
    summary: 'Whether either user blocks the other',
    params: username,
    ok: { 200: { description: 'the block status', data: BlockStatusSchema } },
    errors: ['USER_NOT_FOUND'],
  },
  {
    method: 'get',
    path: '/presence',
    tag: 'Account',
    summary: 'Presence of up to 100 users',
    description: 'A user who blocked the caller, or whom the caller blocked, shows offline with lastSeenAt null.',
    query: PresenceQuery,
    ok: { 200: { description: 'presence by user id', data: z.record(z.string(), PresenceSchema) } },
    errors: ['VALIDATION_FAILED'],
  },
  {
    method: 'get',
    path: '/notifications/preferences',
    tag: 'Account',
    summary: "The caller's notification preferences",
    ok: { 200: { description: 'the preferences (enabled, none muted, by default)', data: NotificationPreferencesSchema } },
  },
  {
    method: 'put',
    path: '/notifications/preferences',
    tag: 'Account',
    summary: "Replace the caller's notification preferences",
    body: { schema: PreferencesBody },
    ok: { 200: { description: 'the stored preferences', data: NotificationPreferencesSchema } },
    errors: BODY_ERRORS,
  },
  {
    method: 'get',
    path: '/openapi.json',
    tag: 'Reference',
    summary: 'This document',
    auth: false,
    ok: { 200: { description: 'OpenAPI 3.1', raw: 'json' } },
  },
  {
    method: 'get',
    path: '/docs',
    tag: 'Reference',
    summary: 'A browsable reference of this document',
    auth: false,
    ok: { 200: { description: 'an HTML page', raw: 'html' } },
  },
];

const DEV_ONLY =
  'Exists only in development: while JWT_SECRET is the development default, NODE_ENV is not production and JWT_JWKS_URL is unset ' +
  '(a token signed with that public secret is no secret anyway). Anywhere else the path is an unknown route (404 NOT_FOUND), and this document leaves it out.';

/** Development sign-in (dev-sign-in.ts): documented exactly when the gateway serves it, so the document still lists the router's routes. */
export const DEV_ROUTES: RouteDoc[] = [
  {
    method: 'get',
    path: '/dev/users',
    tag: 'Development',
    summary: 'The seeded users one can sign in as (development only)',
    description: DEV_ONLY,
    auth: false,
    ok: { 200: { description: 'the users `npm run seed` creates', data: z.array(DevUserSchema) } },
  },
  {
    method: 'post',
    path: '/dev/token',
    tag: 'Development',
    summary: 'A 24 h token for a seeded user (development only)',
    description: `${DEV_ONLY} The username matches case-insensitively.`,
    auth: false,
    body: { schema: DevTokenBody },
    ok: { 200: { description: 'an HS256 token signed with JWT_SECRET, as `npm run token` makes', data: DevTokenSchema } },
    errors: [...BODY_ERRORS, 'USER_NOT_FOUND', 'INTERNAL'],
  },
];

/**
 * The WebSocket endpoint, which the upgrade handler serves (not the router).
 * OpenAPI cannot describe the frames; docs/websocket.md does.
 */
const wsRoute = (): RouteConfig => ({
  method: 'get',
  path: '/ws',
  tags: ['WebSocket'],
  summary: 'The WebSocket (upgrade)',
  description:
    'Upgrade to a WebSocket. Authenticate with `?token=<JWT>`, an `Authorization: Bearer` header, or `?ticket=` from POST /ws-ticket. ' +
    '`since=<seq>` resumes: every durable event after it, then `hello`. Every check happens before the 101. ' +
    'Upgrades are limited per client IP (60 a minute by default), and open sockets per user (20) and per IP (500), across all instances: past either, `429 RATE_LIMITED` with `Retry-After`. Frames and events: docs/websocket.md.',
  request: {
    query: z.object({
      token: z.string().optional(),
      ticket: z.string().optional(),
      since: z.string().regex(/^\d+$/).optional().openapi({ description: 'the last seq the client saw' }),
    }),
  },
  responses: {
    101: { description: 'Switching Protocols' },
    ...errorResponses(['VALIDATION_FAILED', 'UNAUTHORIZED', 'ORIGIN_NOT_ALLOWED', 'IP_BLOCKED', 'RATE_LIMITED', 'NOT_FOUND', 'SERVICE_UNAVAILABLE']),
  },
});

const ErrorBody = z.object({
  error: z.object({
    code: z.enum(Object.values(ErrorCode) as [ErrorCode, ...ErrorCode[]]),
    message: z.string(),
    details: z.unknown().optional().openapi({ description: 'VALIDATION_FAILED: one `{ path, message }` per bad field' }),
    requestId: z.string().openapi({ description: 'the X-Request-Id of the answer' }),
  }),
});

/** One response per status, listing the codes it can carry (and narrowing `code` to them). */
function errorResponses(codes: readonly ErrorCode[]): RouteConfig['responses'] {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of new Set(codes)) byStatus.set(errorStatus[code], [...(byStatus.get(errorStatus[code]) ?? []), code]);
  const out: RouteConfig['responses'] = {};
  for (const [status, list] of [...byStatus].sort(([a], [b]) => a - b)) {
    const schema = ErrorBody.extend({ error: ErrorBody.shape.error.extend({ code: z.enum(list as [ErrorCode, ...ErrorCode[]]) }) });
    out[status] = {
      description: list.join(', '),
      ...(status === 429 || list.includes('IP_BLOCKED')
        ? { headers: { 'Retry-After': { description: status === 429 ? 'seconds to wait' : 'with IP_BLOCKED for failed authentications: seconds until the ban ends', schema: { type: 'integer' } } } }
        : {}),
      content: { 'application/json': { schema } },
    };
  }
  return out;
}

const RATE_LIMIT_HEADERS = {
  'RateLimit-Limit': { description: 'the limit per window', schema: { type: 'integer' as const } },
  'RateLimit-Remaining': { description: 'what is left of it', schema: { type: 'integer' as const } },
  'RateLimit-Reset': { description: 'seconds until the window ends', schema: { type: 'integer' as const } },
};

function toRouteConfig(r: RouteDoc): RouteConfig {
  const responses: RouteConfig['responses'] = {};
  for (const [status, ok] of Object.entries(r.ok)) {
    const headers = { 'X-Request-Id': { description: 'echoed when the client sent one', schema: { type: 'string' as const } }, ...(r.limited ? RATE_LIMIT_HEADERS : {}) };
    if (ok.raw === 'html') responses[status] = { description: ok.description, content: { 'text/html': { schema: z.string() } } };
    else if (ok.raw === 'json') responses[status] = { description: ok.description, content: { 'application/json': { schema: z.object({}).passthrough() } } };
    else if (!ok.data) responses[status] = { description: ok.description, headers };
    else {
      const envelope = ok.meta ? z.object({ data: ok.data, meta: ok.meta }) : z.object({ data: ok.data });
      responses[status] = { description: ok.description, headers, content: { 'application/json': { schema: envelope } } };
    }
  }
  Object.assign(responses, errorResponses([...(r.errors ?? []), ...(r.auth === false ? [] : AUTH_ERRORS)]));
  return {
    method: r.method,
    path: r.path,
    tags: [r.tag],
    summary: r.summary,
    ...(r.description ? { description: r.description } : {}),
    ...(r.auth === false ? { security: [] } : {}),
    request: {
      ...(r.params ? { params: r.params } : {}),
      ...(r.query ? { query: r.query as z.ZodObject } : {}),
      ...(r.body ? { body: { required: r.body.required ?? true, content: { 'application/json': { schema: r.body.schema } } } } : {}),
    },
    responses,
  };
}

/** The OpenAPI 3.1 document, generated from the contracts' zod schemas (built once per variant, on first use). */
export function openApiDocument(opts: { devSignIn?: boolean } = {}): Record<string, unknown> {
  const devSignIn = opts.devSignIn ?? false;
  let doc = cached.get(devSignIn);
  if (!doc) cached.set(devSignIn, (doc = build(devSignIn)));
  return doc;
}
const cached = new Map<boolean, Record<string, unknown>>();

function build(devSignIn: boolean): Record<string, unknown> {
  const registry = new OpenAPIRegistry();
  // Named components, so the document reads like SPEC's object list.
  for (const [name, schema] of [
    ['User', UserSchema],
    ['Message', MessageSchema],
    ['Conversation', ConversationSchema],
    ['BlockStatus', BlockStatusSchema],
    ['Block', BlockSchema],
    ['Presence', PresenceSchema],
    ['PageMeta', PageMetaSchema],
    ['Event', DurableEventSchema],
    ['NotificationPreferences', NotificationPreferencesSchema],
    ['Error', ErrorBody],
  ] as const)
    registry.register(name, schema);
  registry.registerComponent('securitySchemes', 'bearer', { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' });
  for (const r of devSignIn ? [...ROUTES, ...DEV_ROUTES] : ROUTES) registry.registerPath(toRouteConfig(r));
  registry.registerPath(wsRoute());
  return new OpenApiGeneratorV31(registry.definitions).generateDocument({
    openapi: '3.1.0',
    info: {
      title: 'Chat API',
      version: '1.0.0',
      description:
        '1:1 chat: REST under /api/chat and a WebSocket at /api/chat/ws. Answers are `{ data, meta? }` or `{ error: { code, message, details?, requestId } }`. ' +
        'Pagination: `limit` 1–100 (default 20) and the opaque `cursor` of the previous page. Times are ISO 8601 UTC with milliseconds.',
    },
    servers: [{ url: '/api/chat' }],
    security: [{ bearer: [] }],
  }) as unknown as Record<string, unknown>;
}
