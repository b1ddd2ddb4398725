import type { Context } from 'hono';
import { ChatError, errorStatus, issuesToDetails, type ErrorCode } from '@chat/contracts';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { z } from 'zod';
import type { Principal } from './auth';

export type GatewayEnv = {
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

export function parseOrThrow<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw new ChatError('VALIDATION_FAILED', 'request failed validation', issuesToDetails(r.error.issues));
  return r.data;
}

/**
 * The JSON body of a request: `application/json` or nothing else (415), and
 * valid JSON (400). An empty body reads as `{}` where the route allows it.
 */
export async function jsonBody(c: Context, { optional = false } = {}): Promise<unknown> {
  const text = await c.req.text();
  if (text.trim() === '') {
    if (optional) return {};
    throw new ChatError('VALIDATION_FAILED', 'request body is required', [{ path: '(root)', message: 'expected a JSON object' }]);
  }
  const type = c.req.header('content-type') ?? '';
  if (!/^application\/json\s*(;|$)/i.test(type))
    throw new ChatError('UNSUPPORTED_MEDIA_TYPE', 'request body must be application/json');
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new ChatError('VALIDATION_FAILED', 'request body is not valid JSON', [{ path: '(root)', message: 'invalid JSON' }]);
  }
}
