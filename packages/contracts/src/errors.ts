/**
 * The closed set of error codes. Every code has exactly one HTTP status;
 * a new code is not valid until it is listed here (the compiler enforces it).
 */
export const ErrorCode = {
  VALIDATION_FAILED: 'VALIDATION_FAILED',
  INVALID_FRAME: 'INVALID_FRAME',
  INVALID_CURSOR: 'INVALID_CURSOR',
  CANNOT_CHAT_WITH_SELF: 'CANNOT_CHAT_WITH_SELF',
  CANNOT_BLOCK_SELF: 'CANNOT_BLOCK_SELF',
  UNAUTHORIZED: 'UNAUTHORIZED',
  BLOCKED: 'BLOCKED',
  NOT_SENDER: 'NOT_SENDER',
  EDIT_WINDOW_PASSED: 'EDIT_WINDOW_PASSED',
  IP_BLOCKED: 'IP_BLOCKED',
  ORIGIN_NOT_ALLOWED: 'ORIGIN_NOT_ALLOWED',
  NOT_FOUND: 'NOT_FOUND',
  USER_NOT_FOUND: 'USER_NOT_FOUND',
  CONVERSATION_NOT_FOUND: 'CONVERSATION_NOT_FOUND',
  MESSAGE_NOT_FOUND: 'MESSAGE_NOT_FOUND',
  NOT_BLOCKED: 'NOT_BLOCKED',
  METHOD_NOT_ALLOWED: 'METHOD_NOT_ALLOWED',
  ALREADY_BLOCKED: 'ALREADY_BLOCKED',
  MESSAGE_DELETED: 'MESSAGE_DELETED',
  TOO_MANY_REACTIONS: 'TOO_MANY_REACTIONS',
  IDEMPOTENCY_CONFLICT: 'IDEMPOTENCY_CONFLICT',
  RESYNC_REQUIRED: 'RESYNC_REQUIRED',
  PAYLOAD_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  UNSUPPORTED_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  RATE_LIMITED: 'RATE_LIMITED',
  INTERNAL: 'INTERNAL',
  SERVICE_UNAVAILABLE: 'SERVICE_UNAVAILABLE',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export const errorStatus: Record<ErrorCode, number> = {
  VALIDATION_FAILED: 400,
  INVALID_FRAME: 400,
  INVALID_CURSOR: 400,
  CANNOT_CHAT_WITH_SELF: 400,
  CANNOT_BLOCK_SELF: 400,
  UNAUTHORIZED: 401,
  BLOCKED: 403,
  NOT_SENDER: 403,
  EDIT_WINDOW_PASSED: 403,
  IP_BLOCKED: 403,
  ORIGIN_NOT_ALLOWED: 403,
  NOT_FOUND: 404,
  USER_NOT_FOUND: 404,
  CONVERSATION_NOT_FOUND: 404,
  MESSAGE_NOT_FOUND: 404,
  NOT_BLOCKED: 404,
  METHOD_NOT_ALLOWED: 405,
  ALREADY_BLOCKED: 409,
  MESSAGE_DELETED: 409,
  TOO_MANY_REACTIONS: 409,
  IDEMPOTENCY_CONFLICT: 409,
  RESYNC_REQUIRED: 410,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  RATE_LIMITED: 429,
  INTERNAL: 500,
  SERVICE_UNAVAILABLE: 503,
};

export interface ErrorBody {
  code: ErrorCode;
  message: string;
  details?: unknown;
}

/** A domain failure that crosses the bus as `{ ok: false, error }`. */
export class ChatError extends Error {
  readonly code: ErrorCode;
  readonly details?: unknown;
  /** RATE_LIMITED only: when the caller may try again (REST `Retry-After`, WS `retryAfterMs`). */
  readonly retryAfterMs?: number;
  /**
   * For the log only (subjects, library messages): never in toBody(), so it
   * neither crosses the bus nor reaches a client, who gets code and message.
   */
  readonly internal?: unknown;

  constructor(code: ErrorCode, message: string, details?: unknown, opts: { retryAfterMs?: number; internal?: unknown } = {}) {
    super(message);
    this.name = 'ChatError';
    this.code = code;
    if (details !== undefined) this.details = details;
    if (opts.retryAfterMs !== undefined) this.retryAfterMs = opts.retryAfterMs;
    if (opts.internal !== undefined) this.internal = opts.internal;
  }

  toBody(): ErrorBody {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }
}

export const isChatError = (e: unknown): e is ChatError => e instanceof ChatError;

export interface FieldIssue {
  path: string;
  message: string;
}

/** zod issues → the `details` list of VALIDATION_FAILED, one entry per bad field. */
export function issuesToDetails(issues: ReadonlyArray<{ path: PropertyKey[]; message: string }>): FieldIssue[] {
  return issues.map((i) => ({ path: i.path.map(String).join('.') || '(root)', message: i.message }));
}
