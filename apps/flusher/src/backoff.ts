/**
 * Capped exponential backoff with full jitter: after n consecutive failures the next
 * attempt waits a random time in [0, min(cap, base · 2^n)], so many flushers (or one
 * flusher and a recovering PostgreSQL) do not retry in lock-step.
 */
export class Backoff {
  private failures = 0;
  private notBefore = 0;

  constructor(
    private readonly baseMs: number,
    private readonly capMs: number,
    private readonly random: () => number = Math.random,
  ) {}

  get consecutiveFailures(): number {
    return this.failures;
  }

  ready(now = Date.now()): boolean {
    return now >= this.notBefore;
  }

  /** Records a failure; returns the delay chosen before the next attempt. */
  fail(now = Date.now()): number {
    this.failures++;
    const ceiling = Math.min(this.capMs, this.baseMs * 2 ** Math.min(this.failures, 30));
    const delay = Math.round(this.random() * ceiling);
    this.notBefore = now + delay;
    return delay;
  }

  succeed(): void {
    this.failures = 0;
    this.notBefore = 0;
  }
}
