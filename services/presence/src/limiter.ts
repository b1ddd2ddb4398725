/** Runs at most `max` tasks at once; the others wait in arrival order. */
export class Limiter {
  private active = 0;
  private queue: Array<() => void> = [];
  private head = 0;

  constructor(private readonly max: number) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.active < this.max) this.active++;
    else await new Promise<void>((resolve) => this.queue.push(resolve));
    try {
      return await task();
    } finally {
      // The slot passes straight to the next waiter, so `active` never over-counts.
      if (this.head < this.queue.length) {
        const next = this.queue[this.head++]!;
        // Drop the consumed front now and then instead of shifting the array on every hand-over.
        if (this.head > 1024 && this.head * 2 > this.queue.length) {
          this.queue = this.queue.slice(this.head);
          this.head = 0;
        }
        next();
      } else this.active--;
    }
  }
}
