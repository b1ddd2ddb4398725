import type { Logger } from './logger';

export interface Stoppable {
  stop(): Promise<void>;
}

/** A named teardown step; a composition root collects them as it starts things and runs them in reverse. */
export class Teardown implements Stoppable {
  private readonly steps: Array<{ name: string; run: () => Promise<unknown> }> = [];
  private stopping: Promise<void> | undefined;

  constructor(private readonly log: Logger) {}

  add(name: string, run: () => Promise<unknown>): void {
    this.steps.push({ name, run });
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      for (const step of [...this.steps].reverse()) {
        try {
          await step.run();
        } catch (err) {
          this.log.warn({ err, step: step.name }, 'shutdown step failed');
        }
      }
    })();
    return this.stopping;
  }
}

/**
 * SIGTERM/SIGINT → stop in order, then exit. A second signal or a stuck
 * step past `graceMs` forces the exit so an orchestrator is never left waiting.
 */
export function exitOnSignals(app: Stoppable, log: Logger, graceMs = 15_000): void {
  let signalled = false;
  const handler = (signal: NodeJS.Signals) => {
    if (signalled) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    signalled = true;
    log.info({ signal }, 'stopping');
    const timer = setTimeout(() => {
      log.error('shutdown took too long: exiting');
      process.exit(1);
    }, graceMs);
    timer.unref();
    app
      .stop()
      .then(() => {
        log.info('stopped');
        process.exit(0);
      })
      .catch((err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      });
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
}
