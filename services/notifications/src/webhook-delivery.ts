import { Webhook } from 'standardwebhooks';
import { withTransaction, WorkLoop, type Database, type Logger } from '@chat/platform';
import { DeliveryOutcome, type NotificationMetrics } from './notification-metrics';
import { NotificationsRepository, type DueNotification, type NotificationPayload } from './notifications.repository';

const BATCH = 16;
/** Fallback poll: rows stored by another replica, or a wake-up that was missed. */
const POLL_MS = 1000;
const MIN_WAIT_MS = 20;
const RETRY_MS = 1000;
const MAX_ERROR_CHARS = 500;

export interface WebhookOptions {
  url: string;
  timeoutMs: number;
  retryBaseMs: number;
  retryMaxMs: number;
  giveUpAfterMs: number;
  /** NOTIFICATION_WEBHOOK_SECRET (`whsec_` + base64): each POST is signed per Standard Webhooks. Unset: unsigned. */
  secret?: string;
}

/**
 * Exponential backoff with full jitter: before retry n (n = 1 after the
 * first failure) wait a uniform random time in [0, min(max, base * 2^(n-1))).
 */
export function retryDelayMs(failures: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(Math.max(failures - 1, 0), 30));
  return Math.floor(random() * ceiling);
}

interface PostResult {
  ok: boolean;
  status: number | null;
  error: string | null;
}

/**
 * The Standard Webhooks headers for one POST of `body`. Signed again at each
 * attempt: receivers refuse a timestamp more than 5 minutes off their clock,
 * and retries go on for much longer than that.
 */
export function signatureHeaders(signer: Webhook, notificationId: string, body: string, at = new Date()): Record<string, string> {
  return {
    'webhook-id': notificationId,
    'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
    'webhook-signature': signer.sign(notificationId, at, body),
  };
}

/** One POST of the payload; never throws. A redirect counts as a failure (the URL is configured, not discovered). */
export async function postWebhook(url: string, payload: NotificationPayload, timeoutMs: number, signer?: Webhook): Promise<PostResult> {
  try {
    const body = JSON.stringify(payload);
    const res = await fetch(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'idempotency-key': payload.notificationId,
        ...(signer ? signatureHeaders(signer, payload.notificationId, body) : {}),
      },
      body,
      redirect: 'manual',
      signal: AbortSignal.timeout(timeoutMs),
    });
    // The body is not needed; cancelling it frees the connection.
    await res.body?.cancel().catch(() => undefined);
    return { ok: res.status >= 200 && res.status < 300, status: res.status, error: null };
  } catch (err) {
    const e = err as Error & { cause?: { code?: string; message?: string } };
    const error = e.name === 'TimeoutError' ? `timed out after ${timeoutMs} ms` : [e.message, e.cause?.code ?? e.cause?.message].filter(Boolean).join(': ');
    return { ok: false, status: null, error: error.slice(0, MAX_ERROR_CHARS) };
  }
}

const resultClass = (r: PostResult) => (r.status === null ? 'error' : r.status >= 200 && r.status < 300 ? '2xx' : r.status >= 400 && r.status < 600 ? `${Math.floor(r.status / 100)}xx` : 'other');

/**
 * POSTs due notifications to NOTIFICATION_WEBHOOK_URL until each gets a 2xx
 * or is older than the give-up age. Every replica runs one; claimDue's
 * SKIP LOCKED and lease keep them on different rows. A notification is
 * delivered at least once: a worker that dies mid-POST leaves its rows to
 * come due again when their lease ends, and the receiver dedupes by
 * Idempotency-Key.
 */
export class WebhookDelivery extends WorkLoop {
  private readonly repo: NotificationsRepository;
  /** Longer than one POST plus recording its outcome, so no other worker takes a row in flight. */
  private readonly leaseMs: number;
  private readonly signer: Webhook | undefined;
  constructor(
    private readonly db: Database,
    private readonly opts: WebhookOptions,
    private readonly metrics: NotificationMetrics,
    log: Logger,
  ) {
    super(log, 'webhook delivery', RETRY_MS);
    this.repo = new NotificationsRepository(db);
    this.leaseMs = opts.timeoutMs + 10_000;
    this.signer = opts.secret ? new Webhook(opts.secret) : undefined;
  }

  protected async round(): Promise<number> {
    const claimed = await this.deliverBatch();
    return claimed < BATCH ? this.idleMs() : 0;
  }

  /** Until the earliest pending row falls due, within [MIN_WAIT_MS, POLL_MS]. */
  private async idleMs(): Promise<number> {
    const next = await this.repo.msUntilNextDue().catch(() => null);
    return Math.min(POLL_MS, Math.max(MIN_WAIT_MS, next ?? POLL_MS));
  }

  async deliverBatch(): Promise<number> {
    const due = await this.repo.claimDue(BATCH, this.leaseMs);
    await Promise.all(due.map((n) => this.deliverOne(n)));
    return due.length;
  }

  private async deliverOne(n: DueNotification): Promise<void> {
    const started = performance.now();
    const result = await postWebhook(this.opts.url, n.payload, this.opts.timeoutMs, this.signer);
    this.metrics.webhookDuration.observe({ result: resultClass(result) }, (performance.now() - started) / 1000);
    const ctx = { notificationId: n.id, userId: n.payload.receiverId, messageId: n.payload.messageId };
    try {
      const outcome = await withTransaction(this.db, async (tx) => {
        const repo = new NotificationsRepository(tx);
        if (result.ok) {
          await repo.addAttempt(n.id, await repo.recordDelivered(n.id), result.status, null);
          return DeliveryOutcome.delivered;
        }
        const delay = retryDelayMs(n.attempts + 1, this.opts.retryBaseMs, this.opts.retryMaxMs);
        const failed = await repo.recordFailed(n.id, delay, this.opts.giveUpAfterMs);
        await repo.addAttempt(n.id, failed.attempt, result.status, result.error);
        return failed.gaveUp ? DeliveryOutcome.gaveUp : DeliveryOutcome.retry;
      });
      this.metrics.deliveries.inc({ outcome });
      if (outcome === DeliveryOutcome.gaveUp) this.log.warn({ ...ctx, status: result.status, error: result.error }, 'notification given up');
      else if (outcome === DeliveryOutcome.retry) this.log.info({ ...ctx, status: result.status, error: result.error }, 'webhook failed, will retry');
    } catch (err) {
      // The lease runs out and the row comes due again: one more POST, never a lost one.
      this.log.warn({ ...ctx, err: (err as Error).message }, 'webhook delivery: could not record the outcome');
    }
  }
}
