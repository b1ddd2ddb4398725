import type { Logger } from './logger';

/**
 * A background worker that works in rounds: after each round it sleeps for
 * as long as the round asks, unless kicked. A kick that arrives while a round
 * runs is remembered, so work committed during a round is never left for the
 * next poll. `stop()` lets the round in flight finish.
 */
export abstract class WorkLoop {
  private running = false;
  private kicked = false;
  private wake: (() => void) | undefined;
  private loop: Promise<void> | undefined;

  constructor(
    protected readonly log: Logger,
    private readonly name: string,
    private readonly retryMs = 1000,
    /** The least time from one round's start to the next's, kicked or not: work that keeps arriving is taken in batches. */
    private readonly paceMs = 0,
  ) {}

  /** One round of work; resolves with how long to wait before the next (0: at once). */
  protected abstract round(): Promise<number>;

  start(): void {
    this.running = true;
    this.loop = this.run();
  }

  kick(): void {
    this.kicked = true;
    this.wake?.();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.loop;
  }

  private async run(): Promise<void> {
    while (this.running) {
      this.kicked = false;
      let waitMs: number;
      const started = Date.now();
      try {
        waitMs = await this.round();
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, `${this.name}: round failed, retrying`);
        waitMs = this.retryMs;
      }
      const pace = this.paceMs - (Date.now() - started);
      if (pace > 0 && this.running) await new Promise((resolve) => setTimeout(resolve, pace));
      if (waitMs > 0) await this.sleep(waitMs);
    }
  }

  private sleep(ms: number): Promise<void> {
    if (this.kicked || !this.running) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wake = done;
    });
  }
}
