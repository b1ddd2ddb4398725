import type { Logger } from '@chat/platform';
import { SendDeadlineError, type SendItem, type SendResult } from './messages.repository';

/** Sends gathered into one call: enough to carry a burst, small enough that one batch stays a few ms. */
const MAX_BATCH = 64;
/** A lone send the database refused for a deadlock or a serialization conflict is tried this many times more. */
const MAX_RETRIES = 3;
const isRetryable = (err: unknown) => ['40P01', '40001'].includes((err as { code?: unknown }).code as string);

/** Batches in flight at once: while they run the next one gathers, so batches grow with the load by themselves. */
const MAX_IN_FLIGHT = 2;

/**
 * Group commit. A send arriving while MAX_IN_FLIGHT batches are running waits
 * for the next batch, which takes every send waiting by then: under load one
 * call, one transaction and one WAL flush carry many sends; a lone send goes
 * at once, alone, so nothing waits when the system is idle.
 *
 * A batch that fails as a whole (a deadline passed for one of its sends, a
 * deadlock, a value PostgreSQL refuses) is retried one send at a time, so one
 * send's failure is that send's alone.
 */
export class SendBatcher {
  private queue: Array<{ item: SendItem; resolve: (r: SendResult) => void; reject: (err: unknown) => void; attempts?: number }> = [];
  private inFlight = 0;

  constructor(
    private readonly run: (items: readonly SendItem[]) => Promise<SendResult[]>,
    private readonly log: Logger,
    private readonly onBatch: (size: number) => void = () => undefined,
  ) {}

  submit(item: SendItem): Promise<SendResult> {
    return new Promise((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.inFlight < MAX_IN_FLIGHT && this.queue.length > 0) {
      const batch = this.queue.splice(0, MAX_BATCH);
      this.inFlight++;
      void this.flush(batch).finally(() => {
        this.inFlight--;
        this.pump();
      });
    }
  }

  private async flush(batch: SendBatcher['queue']): Promise<void> {
    try {
      this.onBatch(batch.length);
      const results = await this.run(batch.map((b) => b.item));
      batch.forEach((b, i) => b.resolve(results[i]!));
    } catch (err) {
      if (batch.length === 1) {
        const b = batch[0]!;
        if (err instanceof SendDeadlineError) b.resolve({ status: 'expired' });
        // PostgreSQL chose this transaction to break a deadlock (or a serialization conflict): nothing was written; try again.
        else if (isRetryable(err) && (b.attempts = (b.attempts ?? 0) + 1) <= MAX_RETRIES) return this.flush(batch);
        else b.reject(err);
        return;
      }
      this.log.debug({ err: (err as Error).message, sends: batch.length }, 'send batch failed as a whole: retrying each send alone');
      await Promise.all(batch.map((b) => this.flush([b])));
    }
  }
}
