import { z } from './zod';
import { ErrorCode, type ErrorBody } from './errors';

/** The one reply shape of every request/reply subject. */
export type Reply<T> = { ok: true; data: T } | { ok: false; error: ErrorBody };

export const ErrorBodySchema = z.object({
  code: z.enum(Object.values(ErrorCode) as [ErrorCode, ...ErrorCode[]]),
  message: z.string(),
  details: z.unknown().optional(),
});

export const ReplySchema = z.union([
  z.object({ ok: z.literal(true), data: z.unknown() }),
  z.object({ ok: z.literal(false), error: ErrorBodySchema }),
]);

/** Header names carried on every bus message. */
export const Headers = {
  requestId: 'Chat-Request-Id',
} as const;
