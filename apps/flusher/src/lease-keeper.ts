import type { PartitionLease } from '@safepkg/core';

/**
 * Holds one partition's lease for the length of a tick. It renews on a timer as well as
 * between rounds, because a single long round (a slow COPY, a halving cascade over
 * poison rows) can outlast the TTL; and it remembers a failed renewal, so the round can
 * drop the partition's entries before its next PostgreSQL write synchronously instead of
 * paying a Redis round trip per partition before every statement.
 */
export class LeaseKeeper {
  private lost = false;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly lease: PartitionLease,
    private readonly renewEveryMs: number,
    private readonly onLost: (partition: number) => void = () => undefined,
  ) {}

  get partition(): number {
    return this.lease.partition;
  }

  get isLost(): boolean {
    return this.lost;
  }

  start(): void {
    this.timer = setInterval(() => {
      // A Redis error here is not a loss: the next boundary renewal decides, and fails the tick if Redis is gone.
      this.renew().catch(() => undefined);
    }, this.renewEveryMs);
  }

  /** True if still held (and extended); once false, stays false. */
  async renew(): Promise<boolean> {
    if (this.lost) return false;
    const held = await this.lease.renew();
    if (!held && !this.lost) {
      this.lost = true;
      this.onLost(this.lease.partition);
    }
    return held;
  }

  /** Stops renewing and releases the lease (compare-on-token: a successor's lease is never deleted). */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (!this.lost) await this.lease.release().catch(() => undefined);
  }
}
