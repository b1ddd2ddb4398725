import type { Context } from 'hono';
import type { IncomingMessage } from 'node:http';
import { ChatError, errorStatus, findUnstorableText, issuesToDetails, unstorableText, UsernameSchema, type ErrorCode } from '@chat/contracts';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { z } from 'zod';
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

export function parseOrThrow<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw new ChatError('VALIDATION_FAILED', 'request failed validation', issuesToDetails(r.error.issues));
  return r.data;
}

/**
 * An id from the path. One longer than any id can be cannot exist, so it is
 * the same 404 as an unknown id (SPEC 4), not a 400 from the bus schema.
 */
export function pathId(c: Context, name: string, notFound: 'CONVERSATION_NOT_FOUND' | 'MESSAGE_NOT_FOUND'): string {
  const id = c.req.param(name) ?? '';
  if (id.length < 1 || id.length > 128)
    throw new ChatError(notFound, notFound === 'MESSAGE_NOT_FOUND' ? 'message not found' : 'conversation not found');
  return id;
}

/** A username from the path: one that no token could carry names no user (404, as GET /conversations/with does). */
export function pathUsername(c: Context): string {
  const username = c.req.param('username') ?? '';
  if (!UsernameSchema.safeParse(username).success) throw new ChatError('USER_NOT_FOUND', `no user named ${username.slice(0, 64)}`);
  return username;
}

/**
 * The JSON body of a request: `application/json` or nothing else (415), and
 * valid JSON (400). An empty body reads as `{}` where the route allows it.
 */
export async function jsonBody(c: Context, { optional = false } = {}): Promise<unknown> {
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
