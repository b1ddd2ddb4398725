import type { ErrorCode } from './types';

/** An error answer of the API (REST or a WebSocket `error` frame), typed by its SPEC code. */
export class ChatApiError<C extends ErrorCode = ErrorCode> extends Error {
  override readonly name = 'ChatApiError';
  constructor(
    readonly code: C,
    message: string,
    /** The HTTP status; 0 for a WebSocket error frame. */
    readonly status: number,
    readonly details?: unknown,
    /** RATE_LIMITED: when to try again (`Retry-After` or `retryAfterMs`). */
    readonly retryAfterMs?: number,
    readonly requestId?: string,
  ) {
    super(message);
  }
}

/** The request did not get an answer at all: no network, or the server is down. */
export class ChatNetworkError extends Error {
  override readonly name = 'ChatNetworkError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export const isApiError = <C extends ErrorCode>(err: unknown, code?: C): err is ChatApiError<C> =>
  err instanceof ChatApiError && (code === undefined || err.code === code);

/**
 * Codes after which the same send can never succeed by itself: retrying it
 * would only repeat the refusal (and, for IDEMPOTENCY_CONFLICT, could never
 * become the message the user wrote).
 */
const FINAL_SEND_CODES: ReadonlySet<string> = new Set<ErrorCode>([
  'BLOCKED',
  'IDEMPOTENCY_CONFLICT',
  'VALIDATION_FAILED',
  'INVALID_FRAME',
  'CONVERSATION_NOT_FOUND',
  'NOT_FOUND',
  'PAYLOAD_TOO_LARGE',
  'CANNOT_CHAT_WITH_SELF',
]);
export const isFinalSendError = (code: string): boolean => FINAL_SEND_CODES.has(code);
