/**
 * A small seeded PRNG (mulberry32): the simulator must give the same devices for the
 * same seed in both write modes, so that buffered and direct see identical load.
 */
export class Random {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** 32 random bits as 8 lower-case hex digits. */
  hex8(): string {
    return (this.int(4294967296) >>> 0).toString(16).padStart(8, '0');
  }
}

/**
 * Zipf(s) over ranks 0 … n-1 by inverse CDF (binary search over a precomputed table):
 * rank 0 is the most popular app, as on real devices.
 */
export class Zipf {
  private readonly cdf: Float64Array;

  constructor(
    readonly n: number,
    readonly exponent: number,
  ) {
    this.cdf = new Float64Array(n);
    let sum = 0;
    for (let k = 0; k < n; k++) {
      sum += 1 / Math.pow(k + 1, exponent);
      this.cdf[k] = sum;
    }
    for (let k = 0; k < n; k++) this.cdf[k] = (this.cdf[k] as number) / sum;
  }

  /** The probability of a rank (for tests and for reporting the head's weight). */
  probability(rank: number): number {
    return (this.cdf[rank] as number) - (rank === 0 ? 0 : (this.cdf[rank - 1] as number));
  }

  sample(rng: Random): number {
    const u = rng.next();
    let lo = 0;
    let hi = this.n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((this.cdf[mid] as number) < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
