import type { Queue } from 'bullmq';
import { FLUSH_SCHEDULER_ID, type Logger, type RedisClient } from '@safepkg/core';

export interface ScheduleKeeperOptions {
  queue: Queue;
  /** The queue's connection: its `ready` event means Redis (re)connected. */
  connection: RedisClient;
  everyMs: number;
  /** When the worker last started a tick (epoch ms), for the watchdog. */
  lastTickAt: () => number;
  logger: Logger;
}

/**
 * Keeps the flush Job Scheduler in Redis. The scheduler lives only in Redis: a Redis that
 * comes back empty (no AOF, or a failover to a replica that missed it) would otherwise leave
 * a running flusher idle forever with the buffer growing. So it is upserted at every
 * (re)connect of the queue connection, and again whenever no tick has started for ten
 * intervals (at least 30 s). Upserting an existing scheduler only replaces its next delayed
 * job, so doing it again is harmless.
 */
export class ScheduleKeeper {
  private watchdog: NodeJS.Timeout | null = null;
  private readonly onReady = () => void this.ensure('redis connected');

  constructor(private readonly options: ScheduleKeeperOptions) {}

  start(): void {
    const { connection, everyMs, lastTickAt } = this.options;
    connection.on('ready', this.onReady);
    if (connection.status === 'ready') void this.ensure('start');
    const staleMs = Math.max(30_000, everyMs * 10);
    this.watchdog = setInterval(
      () => {
        if (Date.now() - lastTickAt() > staleMs) void this.ensure('no tick for a while');
      },
      Math.max(5_000, everyMs * 5),
    );
    this.watchdog.unref();
  }

  stop(): void {
    this.options.connection.off('ready', this.onReady);
    if (this.watchdog) clearInterval(this.watchdog);
    this.watchdog = null;
  }

  /** Upserts the scheduler; failures are logged and retried by the next trigger. */
  async ensure(reason: string): Promise<void> {
    const { queue, everyMs, logger } = this.options;
    try {
      await queue.upsertJobScheduler(
        FLUSH_SCHEDULER_ID,
        { every: everyMs },
        { name: 'flush', data: { reason: 'schedule' }, opts: { removeOnComplete: true, removeOnFail: 100 } },
      );
      logger.info({ reason, everyMs }, 'flush scheduler in place');
    } catch (err) {
      logger.warn(
        { err: (err as Error).message, reason },
        'could not upsert the flush scheduler; retrying later',
      );
    }
  }
}
