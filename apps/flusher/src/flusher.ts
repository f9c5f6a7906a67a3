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
  type ReportBuffer,
  type ReportDelta,
  type ReportSet,
} from '@safepkg/core';
import { Backoff } from './backoff';
import type { Checkpoint } from './crash-points';
import { liveCursors, readRound, type PartitionCursor, type RoundEntry } from './flush-round';
import { startPrefetch, type Prefetch } from './prefetch';
import { LeaseKeeper } from './lease-keeper';
import type { FlusherMetrics } from './metrics';
import {
  RoundWriter,
  type PartitionCounts,
  type ReportOf,
  type RoundOrder,
  type RoundResult,
} from './round-writer';

/** What one partition contributed to a tick. */
export interface PartitionFlushResult extends PartitionCounts {
  partition: number;
  /** Rounds (PostgreSQL transactions, halves aside) that carried its entries. */
  batches: number;
}

export interface TickResult {
  skipped: 'backoff' | 'stopping' | null;
  /** Partitions that had entries flushed or dead-lettered, in partition order. */
  partitions: PartitionFlushResult[];
  /** Rounds written: each one PostgreSQL transaction over entries of any number of partitions. */
  rounds: number;
  /** Reports added to PostgreSQL. */
  reports: number;
  leasesBusy: number;
  ms: number;
  error: string | null;
}

export interface FlusherDeps {
  config: Config;
  redis: RedisClient;
  keys: KeySchema;
  buffer: RedisBuffer;
  reports: ReportBuffer;
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
 * One flush tick takes the lease of every partition it can, then drains them all in
 * rounds of up to FLUSH_BATCH_SIZE entries drawn from several partitions, each round one
 * PostgreSQL transaction. So a tick costs ceil(entries / FLUSH_BATCH_SIZE) transactions
 * however the entries spread over partitions (one per partition per tick before).
 * Failures (PostgreSQL or Redis unavailable) leave entries pending and back the next tick off.
 */
export class Flusher {
  private readonly writer: RoundWriter;
  private readonly backoff: Backoff;
  private stray: number[] = [];
  private strayScannedAt = 0;
  private stopping = false;
  lastSuccessAt: number | null = null;

  constructor(private readonly deps: FlusherDeps) {
    this.writer = new RoundWriter({
      buffer: deps.buffer,
      reports: deps.reports,
      store: deps.store,
      metrics: deps.metrics,
      logger: deps.logger,
      checkpoint: deps.checkpoint,
    });
    this.backoff = deps.backoff ?? new Backoff(deps.config.flushIntervalMs, deps.config.flushBackoffMaxMs);
  }

  /** Lets the current round finish, then stops before the next one. */
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
    const started = Date.now();
    const result: TickResult = {
      skipped: null,
      partitions: [],
      rounds: 0,
      reports: 0,
      leasesBusy: 0,
      ms: 0,
      error: null,
    };
    if (this.stopping) return { ...result, skipped: 'stopping' };
    if (!this.backoff.ready()) return { ...result, skipped: 'backoff' };
    let held: LeaseKeeper[] = [];
    try {
      const wanted = await this.partitions();
      held = await this.acquire(wanted);
      result.leasesBusy = wanted.length - held.length;
      await this.drain(held, result);
      result.ms = Date.now() - started;
      const lost = held.find((k) => k.isLost);
      // Reported as a failed tick, as before rounds: another flusher is at work, so backing off saves work.
      if (lost) throw new LeaseLostError(lost.partition);
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
    } finally {
      // Released on success, error and stop alike; a lost lease is left to its new holder.
      await Promise.all(held.map((k) => k.close()));
    }
    result.ms = Date.now() - started;
    return result;
  }

  /** Takes every lease it can at once (pipelined), skipping partitions another flusher holds. */
  private async acquire(partitions: readonly number[]): Promise<LeaseKeeper[]> {
    const { config, redis, keys, logger, metrics } = this.deps;
    const settled = await Promise.allSettled(
      partitions.map(async (p): Promise<PartitionLease | null> =>
        this.deps.leases === false
          ? { partition: p, renew: async () => true, release: async () => true }
          : Lease.acquire(redis, keys, p, config.lockTtlMs),
      ),
    );
    const leases: PartitionLease[] = [];
    let failure: unknown = null;
    for (const s of settled) {
      if (s.status === 'rejected') failure ??= s.reason;
      else if (s.value) leases.push(s.value);
    }
    if (failure !== null) {
      await Promise.all(leases.map((l) => l.release().catch(() => undefined)));
      throw failure;
    }
    const renewEveryMs = Math.max(100, Math.floor(config.lockTtlMs / 3));
    return leases.map((lease) => {
      const keeper = new LeaseKeeper(lease, renewEveryMs, (partition) => {
        metrics.leaseLosses.inc();
        logger.warn(
          { partition },
          'flush lease lost; its entries are dropped from the tick before the next PostgreSQL write',
        );
      });
      keeper.start();
      return keeper;
    });
  }

  /**
   * Takes each held partition's report deltas, then snapshots its seq, then writes rounds until
   * every partition is drained, lost or the flusher stops. Round N+1 is read from Redis while
   * round N is written to PostgreSQL: the windows are disjoint (each read advances its cursor),
   * and an entry read but never written simply stays pending, so a prefetched round is dropped
   * on stop or error.
   *
   * Report deltas are taken BEFORE the snapshot: a check counts its packages only after they
   * were buffered (or found stored), so every package of a taken set is then in PostgreSQL or
   * buffered at or below the snapshot. The sets are applied in the round that finishes the last
   * partition, after that round's INSERT: no increment can miss a row still in the buffer.
   */
  private async drain(held: readonly LeaseKeeper[], result: TickResult): Promise<void> {
    if (held.length === 0) return;
    const { buffer, reports, config, checkpoint } = this.deps;
    await checkpoint?.('lease-held');
    const sets = new Map<number, ReportSet>();
    // Per partition, the set's deltas not yet written: a package the tick inserts takes its count
    // with it (one write per new package), and only the rest goes to the set's UPDATE.
    const unwritten = new Map<number, Map<string, ReportDelta>>();
    await Promise.all(
      held.map(async (lease) => {
        const set = await reports.take(lease.partition);
        if (!set) return;
        sets.set(lease.partition, set);
        unwritten.set(lease.partition, new Map(set.deltas.map((d) => [d.key, d])));
      }),
    );
    const reportOf = (partition: number, key: string) => {
      const set = sets.get(partition);
      const d = unwritten.get(partition)?.get(key);
      return set && d ? { count: d.count, lastSeenAt: d.lastSeenAt, tag: set.tag } : undefined;
    };
    const written = (done: readonly { partition: number; key: string }[]) => {
      for (const { partition, key } of done) unwritten.get(partition)?.delete(key);
    };
    if (sets.size > 0) await checkpoint?.('reports-taken');
    const cursors: PartitionCursor[] = await Promise.all(
      held.map(async (lease) => ({
        lease,
        snapshot: await buffer.snapshotSeq(lease.partition),
        after: null,
        exhausted: false,
      })),
    );
    const keeperOf = new Map(held.map((k) => [k.partition, k]));
    const isLost = (p: number) => keeperOf.get(p)?.isLost ?? true;
    const byPartition = new Map<number, PartitionFlushResult>();
    // The sets go with the round that finishes the tick's last partition (rather than each with its
    // own partition's last round): a package buffered in one partition and counted in another (pods
    // with different BUFFER_PARTITIONS during a rollout) is then inserted before its increment too.
    const due = () =>
      liveCursors(cursors).length === 0
        ? [...sets.values()]
            .filter((s) => !isLost(s.partition))
            .map((s) => ({ ...s, deltas: [...(unwritten.get(s.partition)?.values() ?? [])] }))
        : [];
    let prefetch: Prefetch | null = null;
    // The last round's Redis confirm, left running beside the next round's transaction (which
    // waits for it before its COMMIT); the tick ends only once it is done.
    let confirming: Promise<void> = Promise.resolve();
    try {
      let round = this.stopping ? [] : await readRound(buffer, cursors, config.flushBatchSize);
      for (;;) {
        const finishing = due();
        if (round.length === 0 && finishing.length === 0) break;
        if (round.length > 0) await checkpoint?.('after-read');
        // Cursors exhausted by this read mean nothing is left to prefetch; the round in hand is still written.
        prefetch =
          !this.stopping && liveCursors(cursors).length > 0
            ? startPrefetch(readRound(buffer, cursors, config.flushBatchSize))
            : null;
        const done = await this.writeRound(round, finishing, isLost, result, byPartition, reportOf, {
          previous: confirming,
          // Only when another round follows: the tick's last round confirms in line.
          overlap: prefetch !== null && !this.stopping,
        });
        written(done.insertedWithReports);
        confirming = done.confirmed;
        if (this.stopping || !prefetch) break;
        // Between rounds, as between batches before: a partition whose renewal fails is dropped from the
        // tick. Every held lease, not only live cursors: the prefetched round may hold entries of a
        // partition whose cursor that read exhausted.
        await Promise.all(held.filter((k) => !k.isLost).map((k) => k.renew()));
        round = await prefetch.entries;
        prefetch = null;
      }
      await confirming;
    } finally {
      // A read or confirm still in flight when the tick ends (stop, error) is waited for, so the
      // tick leaves no Redis call behind it; read entries are dropped unwritten.
      await prefetch?.settled;
      await confirming.catch(() => undefined);
    }
    result.partitions = [...byPartition.values()]
      .filter((r) => r.rows > 0 || r.deadLettered > 0)
      .sort((a, b) => a.partition - b.partition);
  }

  private async writeRound(
    round: readonly RoundEntry[],
    reportSets: readonly ReportSet[],
    isLost: (partition: number) => boolean,
    result: TickResult,
    byPartition: Map<number, PartitionFlushResult>,
    reportOf: ReportOf,
    order: RoundOrder,
  ): Promise<Pick<RoundResult, 'insertedWithReports' | 'confirmed'>> {
    const { logger, metrics } = this.deps;
    const roundStarted = Date.now();
    const end = metrics.batchDuration.startTimer();
    const written = await this.writer.write(round, isLost, reportSets, reportOf, order);
    end();
    result.rounds++;
    result.reports += written.reports;
    const partitions: Record<string, PartitionCounts> = {};
    for (const [p, c] of written.byPartition) {
      partitions[p] = c;
      const total = byPartition.get(p) ?? {
        partition: p,
        rows: 0,
        newRows: 0,
        deadLettered: 0,
        batches: 0,
      };
      byPartition.set(p, {
        partition: p,
        rows: total.rows + c.rows,
        newRows: total.newRows + c.newRows,
        deadLettered: total.deadLettered + c.deadLettered,
        batches: total.batches + 1,
      });
    }
    if (written.rows > 0 || written.deadLettered > 0 || written.reports > 0) {
      const { rows, newRows, deadLettered, reports } = written;
      logger.info(
        {
          round: result.rounds,
          rows,
          newRows,
          deadLettered,
          reports,
          ms: Date.now() - roundStarted,
          partitions,
        },
        'flushed round',
      );
    }
    return written;
  }

  private async record(result: TickResult): Promise<void> {
    const rows = result.partitions.reduce((a, p) => a + p.rows, 0);
    if (rows === 0 && result.reports === 0) return;
    const summary = {
      at: new Date().toISOString(),
      rows,
      reports: result.reports,
      newRows: result.partitions.reduce((a, p) => a + p.newRows, 0),
      deadLettered: result.partitions.reduce((a, p) => a + p.deadLettered, 0),
      ms: result.ms,
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
    for (const r of await this.deps.reports.stats(await this.partitions())) {
      const partition = String(r.partition);
      this.deps.metrics.bufferedReports.set({ partition }, r.buffered);
      this.deps.metrics.reportsOldestAge.set({ partition }, (r.oldestAgeMs ?? 0) / 1000);
    }
  }
}
