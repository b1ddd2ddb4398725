import type { OpenAPIHono, RouteConfig } from '@hono/zod-openapi';
import { z } from 'zod';
import {
  BlockSchema,
  BlockStatusSchema,
  ConversationSchema,
  DurableEventSchema,
  ErrorCode,
  errorStatus,
  MessageSchema,
  NotificationPreferencesSchema,
  PageMetaSchema,
  PresenceSchema,
  SearchResultSchema,
  UserSchema,
} from '@chat/contracts';
import { PathId, PathUsername, type GatewayEnv } from './http';

/**
 * The pieces every route definition shares. Each route is one `createRoute`
 * (routes/*.ts, reference.ts, dev-sign-in.ts, app.ts's /ws-ticket): it both
 * validates the request and documents it, and the document is generated from
 * the router itself (openApiDocument). `.openapi()` works on these schemas
 * because @chat/contracts (imported above) extends zod first (contracts/src/zod.ts).
 */

export const BODY_ERRORS: ErrorCode[] = ['VALIDATION_FAILED', 'UNSUPPORTED_MEDIA_TYPE', 'PAYLOAD_TOO_LARGE'];
export const PAGE_ERRORS: ErrorCode[] = ['VALIDATION_FAILED', 'INVALID_CURSOR'];
/** What any authenticated request can meet, whatever the route. */
const AUTH_ERRORS: ErrorCode[] = ['UNAUTHORIZED', 'IP_BLOCKED', 'RATE_LIMITED', 'SERVICE_UNAVAILABLE', 'INTERNAL'];

/** A route needing no token: the reference itself and development sign-in. */
export const PUBLIC = { security: [] };

const ErrorBody = z.object({
  error: z.object({
    code: z.enum(Object.values(ErrorCode) as [ErrorCode, ...ErrorCode[]]),
    message: z.string(),
    details: z.unknown().optional().openapi({ description: 'VALIDATION_FAILED: one `{ path, message }` per bad field' }),
    requestId: z.string().openapi({ description: 'the X-Request-Id of the answer' }),
  }),
});

type Responses = RouteConfig['responses'];

/** One response per status, listing the codes it can carry (and narrowing `code` to them). */
function errorResponses(codes: readonly ErrorCode[]): Responses {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of new Set(codes)) byStatus.set(errorStatus[code], [...(byStatus.get(errorStatus[code]) ?? []), code]);
  const out: Responses = {};
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

/** The error answers of an authenticated route: its own codes and those every authenticated request can meet. */
export const errors = (...codes: ErrorCode[]): Responses => errorResponses([...codes, ...AUTH_ERRORS]);
/** The error answers of a public route: its own codes only. */
export const publicErrors = (...codes: ErrorCode[]): Responses => errorResponses(codes);

const RATE_LIMIT_HEADERS = {
  'RateLimit-Limit': { description: 'the limit per window', schema: { type: 'integer' as const } },
  'RateLimit-Remaining': { description: 'what is left of it', schema: { type: 'integer' as const } },
  'RateLimit-Reset': { description: 'seconds until the window ends', schema: { type: 'integer' as const } },
};

/**
 * A success answer: `{ data }` (or `{ data, meta }`) with X-Request-Id, and
 * the RateLimit-* headers on a limited route (SPEC 6); without `data`, no body.
 */
export function ok<D extends z.ZodType, M extends z.ZodType | undefined = undefined>(
  description: string,
  data?: D,
  opts: { meta?: M; limited?: boolean } = {},
) {
  const headers = { 'X-Request-Id': { description: 'echoed when the client sent one', schema: { type: 'string' as const } }, ...(opts.limited ? RATE_LIMIT_HEADERS : {}) };
  if (!data) return { description, headers };
  const envelope = (opts.meta ? z.object({ data, meta: opts.meta }) : z.object({ data })) as M extends z.ZodType ? z.ZodObject<{ data: D; meta: M }> : z.ZodObject<{ data: D }>;
  return { description, headers, content: { 'application/json': { schema: envelope } } };
}

/** A JSON request body, documented; jsonBody (http.ts) reads and checks it ahead of the route's validator. */
export const jsonContent = <S extends z.ZodType>(schema: S, required = true) => ({ required, content: { 'application/json': { schema } } });

/**
 * The WebSocket endpoint, which the upgrade handler serves (not the router).
 * OpenAPI cannot describe the frames; docs/websocket.md does.
 */
const wsRoute: RouteConfig = {
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
};

/**
 * The OpenAPI 3.1 document of `/api/chat`'s routes (`api`, whose paths are
 * relative to it), generated from their definitions on first use.
 */
export function openApiDocument(api: OpenAPIHono<GatewayEnv>): () => Record<string, unknown> {
  let doc: Record<string, unknown> | undefined;
  return () => (doc ??= build(api));
}

function build(api: OpenAPIHono<GatewayEnv>): Record<string, unknown> {
  const registry = api.openAPIRegistry;
  // Named components, so the document reads like SPEC's object list.
  for (const [name, schema] of [
    ['User', UserSchema],
    ['Message', MessageSchema],
    ['Conversation', ConversationSchema],
    ['BlockStatus', BlockStatusSchema],
    ['Block', BlockSchema],
    ['Presence', PresenceSchema],
    ['SearchResult', SearchResultSchema],
    ['PageMeta', PageMetaSchema],
    ['Event', DurableEventSchema],
    ['NotificationPreferences', NotificationPreferencesSchema],
    ['Error', ErrorBody],
  ] as const)
    registry.register(name, schema);
  registry.registerComponent('securitySchemes', 'bearer', { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' });
  registry.registerPath(wsRoute);
  return api.getOpenAPI31Document({
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

/** The path parameters, each the 404 of its kind when it names nothing (validationHook). */
export const ConversationIdParam = z.object({
  conversationId: PathId.openapi({ description: 'a conversation the caller takes part in (any other answers 404, as an unknown one does)' }),
});
export const MessageIdParam = z.object({ messageId: PathId.openapi({ description: 'a message of a conversation the caller takes part in' }) });
export const UsernameParam = z.object({ username: PathUsername.openapi({ description: 'a username, matched case-insensitively' }) });
