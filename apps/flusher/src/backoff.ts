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
    private readonly clock: () => number = Date.now,
  ) {}

  get consecutiveFailures(): number {
    return this.failures;
  }

  /** The largest delay the next failure may choose. */
  get ceilingMs(): number {
    // The exponent is clamped so that a long outage cannot overflow to Infinity before the cap applies.
    return Math.min(this.capMs, this.baseMs * 2 ** Math.min(this.failures + 1, 30));
  }

  ready(now = this.clock()): boolean {
    return now >= this.notBefore;
  }

  /** Records a failure; returns the delay chosen before the next attempt. */
  fail(now = this.clock()): number {
    const ceiling = this.ceilingMs;
    this.failures++;
    const delay = Math.round(this.random() * ceiling);
    this.notBefore = now + delay;
    return delay;
  }

  succeed(): void {
    this.failures = 0;
    this.notBefore = 0;
  }
}
