import type { Context, MiddlewareHandler } from 'hono';
import { OpenAPIHono } from '@hono/zod-openapi';
import type { IncomingMessage } from 'node:http';
import { ChatError, errorStatus, findUnstorableText, isChatError, issuesToDetails, unstorableText, UsernameSchema, type ErrorCode } from '@chat/contracts';
import type { Logger } from '@chat/platform';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { z } from 'zod';
import type { Principal } from './auth';

export type GatewayEnv = {
  Bindings: { incoming: IncomingMessage };
  Variables: {
    requestId: string;
    principal: Principal;
  };
};

/** The SPEC's error body: `{ error: { code, message, details?, requestId } }`. */
export function errorResponse(c: Context, code: ErrorCode, message: string, details?: unknown): Response {
  const status = errorStatus[code] as ContentfulStatusCode;
  const requestId = (c.get('requestId') as string | undefined) ?? '';
  return c.json({ error: { code, message, ...(details === undefined ? {} : { details }), requestId } }, status);
}

/**
 * A failure on the server's side (5xx): the client gets its code and message
 * only. Its details and `internal` (subjects, library messages) go to the log
 * under the request's id, where an operator can find them from the client's report.
 */
export const isServerSide = (code: ErrorCode): boolean => errorStatus[code] >= 500;

/** What a client is told of a failure, over REST, a WebSocket frame or a refused upgrade. */
export interface PublicError {
  code: ErrorCode;
  message: string;
  details?: unknown;
  retryAfterMs?: number;
}

/**
 * The one place a failure is split into what the client may see and what
 * only the log may: a server-side ChatError keeps its details and
 * `internal` in a warn line (under `context`: request id, user, frame id);
 * anything that is not a ChatError is INTERNAL to the client and logged with
 * its cause as `unexpected`.
 */
export function toPublicError(err: unknown, log: Logger, context: Record<string, unknown>, unexpected: string): PublicError {
  if (!isChatError(err)) {
    log.error({ err, ...context }, unexpected);
    return { code: 'INTERNAL', message: 'internal error' };
  }
  const serverSide = isServerSide(err.code);
  if (serverSide) log.warn({ ...context, code: err.code, details: err.details, internal: err.internal }, err.message);
  return {
    code: err.code,
    message: err.message,
    ...(err.details === undefined || serverSide ? {} : { details: err.details }),
    ...(err.retryAfterMs === undefined ? {} : { retryAfterMs: err.retryAfterMs }),
  };
}

/** Query values as `c.req.query()` reads them: a repeated key counts once, by its first value. */
export function firstValues<S extends z.ZodObject>(query: S): S {
  const first = (v: unknown) => (Array.isArray(v) ? (v[0] as unknown) : v);
  return z.object(Object.fromEntries(Object.entries(query.shape).map(([k, s]) => [k, z.preprocess(first, s as z.ZodType)]))) as unknown as S;
}

/**
 * Ids and usernames from the path. One that cannot exist (an id longer than
 * any id can be, a name no token could carry) names nothing: the same 404 as
 * an unknown one (SPEC 4), not a 400 from the bus schema. The refinements do
 * not show in the document.
 */
export const PathId = z.string().refine((id) => id.length >= 1 && id.length <= 128);
export const PathUsername = z.string().refine((u) => UsernameSchema.safeParse(u).success);
const PATH_NOT_FOUND: Record<string, (value: string) => ChatError> = {
  conversationId: () => new ChatError('CONVERSATION_NOT_FOUND', 'conversation not found'),
  messageId: () => new ChatError('MESSAGE_NOT_FOUND', 'message not found'),
  username: (username) => new ChatError('USER_NOT_FOUND', `no user named ${username.slice(0, 64)}`),
};

/**
 * Every route's validation failure (OpenAPIHono's defaultHook): 400
 * VALIDATION_FAILED with one `{ path, message }` per issue, or the path
 * parameter's 404.
 */
export const validationHook = (result: { success: boolean; target: string; error?: { issues: z.core.$ZodIssue[] } }, c: Context): void => {
  if (result.success || !result.error) return;
  if (result.target === 'param') {
    const name = String(result.error.issues[0]?.path[0]);
    const notFound = PATH_NOT_FOUND[name];
    if (notFound) throw notFound(c.req.param(name) ?? '');
  }
  throw new ChatError('VALIDATION_FAILED', 'request failed validation', issuesToDetails(result.error.issues));
};

/** A group of documented routes: `app.openapi(createRoute({...}), handler)`, validated by validationHook. */
export const routeApp = () => new OpenAPIHono<GatewayEnv>({ defaultHook: validationHook });

/**
 * Route middleware for a JSON body, ahead of the route's own validation:
 * `application/json` or nothing else (415), valid UTF-8 and JSON, text a
 * column can hold (400), then the schema, before the path is looked at. An
 * empty body reads as `{}` where the route allows it.
 */
export const jsonBody =
  (schema: z.ZodType, { optional = false } = {}): MiddlewareHandler<GatewayEnv> =>
  async (c, next) => {
    const value = await readJsonBody(c, optional);
    const r = schema.safeParse(value);
    if (!r.success) throw new ChatError('VALIDATION_FAILED', 'request failed validation', issuesToDetails(r.error.issues));
    // The route's validator then reads this value (an empty body as `{}`), under the one type it
    // knows: it accepts exactly what was accepted here, and its own 400 and 415 never come into play.
    // (bodyCache holds promises of each reading; hono's type says otherwise.)
    (c.req.bodyCache as Record<string, Promise<unknown>>).text = Promise.resolve(JSON.stringify(value));
    c.req.raw.headers.set('content-type', 'application/json');
    await next();
  };

async function readJsonBody(c: Context, optional: boolean): Promise<unknown> {
  const bytes = new Uint8Array(await c.req.arrayBuffer());
  let text: string;
  try {
    text = UTF8.decode(bytes);
  } catch {
    throw new ChatError('VALIDATION_FAILED', 'request body is not valid UTF-8', [{ path: '(root)', message: 'invalid UTF-8' }]);
  }
  if (text.trim() === '') {
    if (optional) return {};
    throw new ChatError('VALIDATION_FAILED', 'request body is required', [{ path: '(root)', message: 'expected a JSON object' }]);
  }
  const type = c.req.header('content-type') ?? '';
  if (!/^application\/json\s*(;|$)/i.test(type))
    throw new ChatError('UNSUPPORTED_MEDIA_TYPE', 'request body must be application/json');
  let value: unknown;
  try {
    value = JSON.parse(text) as unknown;
  } catch {
    throw new ChatError('VALIDATION_FAILED', 'request body is not valid JSON', [{ path: '(root)', message: 'invalid JSON' }]);
  }
  const bad = findUnstorableText(value);
  if (bad) throw new ChatError('VALIDATION_FAILED', 'request failed validation', [bad]);
  return value;
}

/** Strict: invalid UTF-8 is refused, never replaced with U+FFFD behind the sender's back. */
const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** Query values, like bodies, must be text a column can hold: no NUL, no lone surrogates. */
export function checkQueryText(c: Context): void {
  for (const [name, values] of Object.entries(c.req.queries())) {
    if (name === 'cursor') continue; // any garbage cursor is INVALID_CURSOR (SPEC 4), checked where it is decoded
    for (const v of values) {
      const problem = unstorableText(v);
      if (problem) throw new ChatError('VALIDATION_FAILED', 'request failed validation', [{ path: name, message: problem }]);
    }
  }
}

/** The `RateLimit-*` headers of a limited route (SPEC 6): integers, the reset in seconds. */
export function quotaHeaders(c: Context, quota: { limit: number; remaining: number; resetMs: number }): void {
  c.header('RateLimit-Limit', String(quota.limit));
  c.header('RateLimit-Remaining', String(quota.remaining));
  c.header('RateLimit-Reset', String(Math.ceil(quota.resetMs / 1000)));
}
