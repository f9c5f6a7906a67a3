import {
  Lease,
  LeaseLostError,
  type Config,
  type KeySchema,
  type Logger,
  type PackageStore,
  type PartitionLease,
  type RedisBuffer,
  type RedisClient,
} from '@safepkg/core';
import { Backoff } from './backoff';
import type { Checkpoint } from './crash-points';
import { LeaseKeeper } from './lease-keeper';
import type { FlusherMetrics } from './metrics';
import { PartitionFlusher, type PartitionFlushResult } from './partition-flusher';

export interface TickResult {
  skipped: 'backoff' | 'stopping' | null;
  partitions: PartitionFlushResult[];
  leasesBusy: number;
  error: string | null;
}

export interface FlusherDeps {
  config: Config;
  redis: RedisClient;
  keys: KeySchema;
  buffer: RedisBuffer;
  store: PackageStore;
  metrics: FlusherMetrics;
  logger: Logger;
  /** Test-only: skip the lease entirely (two flushers must still lose nothing). */
  leases?: boolean;
  checkpoint?: Checkpoint;
  /** Defaults to FLUSH_INTERVAL_MS doubling up to FLUSH_BACKOFF_MAX_MS; tests inject their clock and random source. */
  backoff?: Backoff;
}

// Partitions beyond BUFFER_PARTITIONS are rare (a resize); look for them once a minute, not every tick.
const STRAY_SCAN_EVERY_MS = 60_000;

/**
 * One flush tick drains every partition whose lease it can take. Failures (PostgreSQL
 * or Redis unavailable) leave entries pending and back the next tick off.
 */
export class Flusher {
  private readonly partitionFlusher: PartitionFlusher;
  private readonly backoff: Backoff;
  private stray: number[] = [];
  private strayScannedAt = 0;
  private stopping = false;
  lastSuccessAt: number | null = null;

  constructor(private readonly deps: FlusherDeps) {
    this.partitionFlusher = new PartitionFlusher({
      buffer: deps.buffer,
      store: deps.store,
      metrics: deps.metrics,
      logger: deps.logger,
      batchSize: deps.config.flushBatchSize,
      checkpoint: deps.checkpoint,
    });
    this.backoff = deps.backoff ?? new Backoff(deps.config.flushIntervalMs, deps.config.flushBackoffMaxMs);
  }

  /** Lets the current batch finish, then stops at the next boundary. */
  stop(): void {
    this.stopping = true;
  }

  async partitions(now = Date.now()): Promise<number[]> {
    if (now - this.strayScannedAt >= STRAY_SCAN_EVERY_MS) {
      this.stray = await this.deps.buffer.strayPartitions();
      this.strayScannedAt = now;
    }
    return [...Array.from({ length: this.deps.config.bufferPartitions }, (_, p) => p), ...this.stray];
  }

  async tick(): Promise<TickResult> {
    const result: TickResult = { skipped: null, partitions: [], leasesBusy: 0, error: null };
    if (this.stopping) return { ...result, skipped: 'stopping' };
    if (!this.backoff.ready()) return { ...result, skipped: 'backoff' };
    try {
      for (const p of await this.partitions()) {
        if (this.stopping) break;
        const flushed = await this.flushPartition(p);
        if (flushed === null) result.leasesBusy++;
        else if (flushed.rows > 0 || flushed.deadLettered > 0) result.partitions.push(flushed);
      }
      this.backoff.succeed();
      this.lastSuccessAt = Date.now();
      this.deps.metrics.lastSuccess.set(this.lastSuccessAt / 1000);
      await this.record(result);
    } catch (err) {
      const delay = this.backoff.fail();
      result.error = err instanceof Error ? err.message : String(err);
      const reason = err instanceof LeaseLostError ? 'lease_lost' : 'unavailable';
      this.deps.metrics.failures.inc({ reason });
      this.deps.logger.warn(
        { err, retryInMs: delay, consecutiveFailures: this.backoff.consecutiveFailures },
        'flush tick failed; entries stay buffered',
      );
    }
    return result;
  }

  /** Null when another flusher holds the partition's lease. */
  private async flushPartition(p: number): Promise<PartitionFlushResult | null> {
    const { config, redis, keys, logger, metrics } = this.deps;
    const lease: PartitionLease | null =
      this.deps.leases === false
        ? { partition: p, renew: async () => true, release: async () => true }
        : await Lease.acquire(redis, keys, p, config.lockTtlMs);
    if (!lease) return null;
    const keeper = new LeaseKeeper(lease, Math.max(100, Math.floor(config.lockTtlMs / 3)), (partition) => {
      metrics.leaseLosses.inc();
      logger.warn({ partition }, 'flush lease lost; stopping before the next PostgreSQL write');
    });
    keeper.start();
    try {
      await this.deps.checkpoint?.('lease-held');
      const r = await this.partitionFlusher.flush(keeper, () => this.stopping);
      if (r.rows > 0 || r.deadLettered > 0) {
        logger.info(
          { partition: p, rows: r.rows, newRows: r.newRows, deadLettered: r.deadLettered, batches: r.batches, ms: r.ms },
          'flushed partition',
        );
      }
      return r;
    } finally {
      await keeper.close();
    }
  }

  private async record(result: TickResult): Promise<void> {
    const rows = result.partitions.reduce((a, p) => a + p.rows, 0);
    if (rows === 0) return;
    const summary = {
      at: new Date().toISOString(),
      rows,
      newRows: result.partitions.reduce((a, p) => a + p.newRows, 0),
      deadLettered: result.partitions.reduce((a, p) => a + p.deadLettered, 0),
      ms: result.partitions.reduce((a, p) => a + p.ms, 0),
    };
    await this.deps.redis.set(this.deps.keys.flusherStatus(), JSON.stringify(summary));
  }

  /** Refreshes the per-partition gauges (depth, oldest age, dead letters). */
  async observeBuffer(): Promise<void> {
    const stats = await this.deps.buffer.stats(await this.partitions());
    for (const s of stats) {
      const partition = String(s.partition);
      this.deps.metrics.depth.set({ partition }, s.depth);
      this.deps.metrics.oldestAge.set({ partition }, (s.oldestPendingAgeMs ?? 0) / 1000);
      this.deps.metrics.deadLetterDepth.set({ partition }, s.deadLetters);
    }
  }
}
