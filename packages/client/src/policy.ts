/**
 * The client's pure decisions, apart so that they are tested without a
 * server: when to try again, and what to do with a durable event's seq.
 */

/** Reconnect backoff: 0.5 s doubling to a 20 s cap, with full jitter. */
export const RECONNECT_INITIAL_DELAY_MS = 500;
export const RECONNECT_MAX_DELAY_MS = 20_000;

/**
 * "Full jitter" (AWS Architecture Blog, Exponential Backoff and Jitter): a
 * uniform draw from [0, min(cap, base·2^attempt)). After a gateway restart,
 * every client reconnects at a different moment instead of in waves.
 */
export function fullJitterDelay(attempt: number, initialMs = RECONNECT_INITIAL_DELAY_MS, maxMs = RECONNECT_MAX_DELAY_MS, random = Math.random): number {
  const ceiling = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

/**
 * What a durable event's seq means given the last seq applied: the next one
 * (apply it), one already applied (drop it: a replay overlapping a live
 * delivery), or one past a hole (fetch what is missing first).
 */
export function classifySeq(lastSeq: number, seq: number): 'apply' | 'duplicate' | 'gap' {
  if (seq <= lastSeq) return 'duplicate';
  return seq === lastSeq + 1 ? 'apply' : 'gap';
}

/** Close codes the server uses (SPEC 5): token expired or abuse (1008), too slow (1013). */
export const CLOSE_POLICY = 1008;

/** The connection's liveness: the server's ping interval plus this, before probing and giving up. */
export const HEARTBEAT_GRACE_MS = 10_000;
/** A send not acknowledged within this is sent again, with the same clientMessageId. */
export const ACK_TIMEOUT_MS = 10_000;
/** After this many unanswered tries a send is `failed`, for the user to retry or discard. */
export const MAX_SEND_ATTEMPTS = 5;
/** typing.start at most this often per conversation: the server's indicator lasts 5 s. */
export const TYPING_THROTTLE_MS = 3_000;
