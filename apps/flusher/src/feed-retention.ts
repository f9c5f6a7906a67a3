import type { Logger, VerdictFeed } from '@safepkg/core';

// Retention is by days: an hourly pass keeps the feed within an hour of FEED_RETENTION_DAYS.
const EVERY_MS = 3_600_000;

/**
 * Deletes verdict changes older than FEED_RETENTION_DAYS, at most once an hour, from the flush
 * worker (one flusher runs it at a time: BullMQ hands each tick to one worker). Several flushers
 * pruning at once would only repeat an idempotent DELETE. A failure is logged and retried at
 * the next pass; it never fails the flush tick.
 */
export class FeedRetention {
  private lastRunAt = -Infinity;

  constructor(
    private readonly feed: VerdictFeed,
    private readonly retentionDays: number,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  async maybePrune(): Promise<number | null> {
    if (this.now() - this.lastRunAt < EVERY_MS) return null;
    this.lastRunAt = this.now();
    try {
      const deleted = await this.feed.prune(this.retentionDays);
      if (deleted > 0)
        this.logger.info({ deleted, retentionDays: this.retentionDays }, 'verdict changes pruned');
      return deleted;
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, 'verdict change pruning failed; retried in an hour');
      return null;
    }
  }
}
