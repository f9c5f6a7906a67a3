import {
  packageKey,
  parsePackageKey,
  type BufferEntry,
  type Logger,
  type NewPackage,
  type PackageStore,
  type RedisBuffer,
  type ReportApplyResult,
  type ReportBuffer,
  type ReportSet,
} from '@safepkg/core';
import type { Checkpoint } from './crash-points';
import { isDataError } from './data-errors';
import type { RoundEntry } from './flush-round';
import type { FlusherMetrics } from './metrics';

/** What one partition contributed to a round (or, summed, to a tick). */
export interface PartitionCounts {
  rows: number;
  newRows: number;
  deadLettered: number;
}

export interface RoundResult extends PartitionCounts {
  byPartition: Map<number, PartitionCounts>;
  /** Partitions whose report set is now in PostgreSQL (applied here, or found applied) and dropped from Redis. */
  reportsDone: number[];
  /** Reports this round added to PostgreSQL (in new rows, and by its sets' UPDATE). */
  reports: number;
  /** Packages this round inserted with their count from a set: that part of the set is done. */
  insertedWithReports: { partition: number; key: string }[];
  /**
   * The round's Redis confirm when it was left running (`overlap`): settled (its rejection
   * handled) only once awaited by the caller. Otherwise already done.
   */
  confirmed: Promise<void>;
}

/**
 * How a round is ordered with the one before it. `previous`: that round's confirm, still
 * running; every transaction of this round waits for it just before its COMMIT, so at any
 * COMMIT every earlier round is confirmed (the states the crash-point tests pin stay exact) and
 * a failed confirm rolls this round back. `overlap`: leave this round's own confirm running
 * (returned as `confirmed`) so it runs beside the next round's transaction.
 */
export interface RoundOrder {
  previous?: Promise<void>;
  overlap?: boolean;
}

/** A package's count in the tick's report set of its partition, if it has one. */
export type ReportOf = (partition: number, key: string) => NewPackage['report'];

export interface RoundWriterDeps {
  buffer: RedisBuffer;
  reports: ReportBuffer;
  store: PackageStore;
  metrics: FlusherMetrics;
  logger: Logger;
  /** Called at named points of the protocol; fault tests crash the process there. */
  checkpoint?: Checkpoint;
}

interface Item {
  partition: number;
  entry: BufferEntry;
  row: NewPackage;
}

// Compare-and-delete runs in chunks: each chunk is one atomic script, and a bounded chunk keeps one
// script from blocking every other Redis client for the milliseconds a 10k-entry round would take.
// A round is always confirmed in at least two calls so that the mid-confirm fault point exists.
const CONFIRM_CHUNK = 1000;

function groupByPartition<T extends { partition: number }>(items: readonly T[]): Map<number, T[]> {
  const groups = new Map<number, T[]>();
  for (const item of items) {
    let g = groups.get(item.partition);
    if (!g) groups.set(item.partition, (g = []));
    g.push(item);
  }
  return groups;
}

/**
 * Writes one round — entries of several partitions — in ONE PostgreSQL transaction, then
 * compare-and-deletes each entry in its own partition. Entries PostgreSQL refuses are
 * isolated by halving the combined round and dead-lettered in their own partition; any
 * other failure propagates and leaves the entries pending.
 */
export class RoundWriter {
  constructor(private readonly deps: RoundWriterDeps) {}

  /**
   * `isLost(p)` is asked before every PostgreSQL write: a partition whose lease is gone has nothing
   * more written. `reportSets` are the sets of partitions this round finishes: applied in the
   * round's transaction after its INSERT (in a transaction of their own after the halves if
   * PostgreSQL refuses the round's data), then dropped from Redis after COMMIT.
   */
  async write(
    round: readonly RoundEntry[],
    isLost: (partition: number) => boolean,
    reportSets: readonly ReportSet[] = [],
    reportOf: ReportOf = () => undefined,
    order: RoundOrder = {},
  ): Promise<RoundResult> {
    const result: RoundResult = {
      rows: 0,
      newRows: 0,
      deadLettered: 0,
      byPartition: new Map(),
      reportsDone: [],
      reports: 0,
      insertedWithReports: [],
      confirmed: Promise.resolve(),
    };
    const previous = order.previous;
    const beforeCommit = previous ? () => previous : undefined;
    const valid: Item[] = [];
    const malformed: RoundEntry[] = [];
    for (const { partition, entry } of round) {
      try {
        const ref = parsePackageKey(entry.key);
        const report = reportOf(partition, entry.key);
        valid.push({
          partition,
          entry,
          row: { ref, firstSeenAt: new Date(entry.payload.t), ...(report ? { report } : {}) },
        });
      } catch {
        malformed.push({ partition, entry });
      }
    }
    for (const [p, group] of groupByPartition(malformed)) {
      const entries = group.map((g) => g.entry);
      await this.deadLetter(p, entries, { code: 'malformed_key', message: 'not a package key' }, result);
    }
    const sets = reportSets.filter((s) => !isLost(s.partition));
    // Only a round that finishes no report set overlaps: a set is dropped after its entries are confirmed.
    const overlap = order.overlap === true && sets.length === 0;
    const unapplied = await this.writeIsolating(valid, isLost, result, beforeCommit, sets, overlap);
    if (unapplied.length > 0) await this.writeReportsAlone(unapplied, isLost, result, beforeCommit);
    // A round that committed nothing (every entry malformed or poison, or its partitions' leases
    // lost) never ran the beforeCommit above: the previous confirm is awaited here instead, so no
    // later round commits before it and its failure still fails the tick. After a COMMIT it has
    // already settled.
    await previous;
    return result;
  }

  /** A transaction of report sets only: after a halved round, or a tick with deltas and no entries. */
  private async writeReportsAlone(
    sets: readonly ReportSet[],
    isLost: (partition: number) => boolean,
    result: RoundResult,
    beforeCommit: (() => Promise<void>) | undefined,
  ): Promise<void> {
    const live = sets.filter((s) => !isLost(s.partition));
    if (live.length === 0) return;
    const { reports } = await this.deps.store.flushRound([], live, beforeCommit);
    await this.finishReports(live, reports, result);
  }

  /** After COMMIT: every set of the transaction is in PostgreSQL (applied now or before), so drop it. */
  private async finishReports(
    sets: readonly ReportSet[],
    applied: ReportApplyResult | null,
    result: RoundResult,
  ): Promise<void> {
    if (sets.length === 0 || !applied) return;
    const { metrics, logger } = this.deps;
    metrics.reports.inc(applied.reports);
    metrics.reportSets.inc({ result: 'applied' }, applied.applied.length);
    metrics.reportSets.inc({ result: 'already_applied' }, applied.skipped.length);
    result.reports += applied.reports;
    if (applied.unmatched > 0 || applied.malformed.length > 0) {
      metrics.reportsUnmatched.inc(applied.unmatched + applied.malformed.length);
      logger.warn(
        { unmatched: applied.unmatched, malformed: applied.malformed.slice(0, 20) },
        'report deltas for packages PostgreSQL does not hold were dropped',
      );
    }
    await this.deps.checkpoint?.('before-reports-clear');
    for (const set of sets) {
      await this.deps.reports.clear(set);
      result.reportsDone.push(set.partition);
    }
  }

  private counts(result: RoundResult, partition: number): PartitionCounts {
    let c = result.byPartition.get(partition);
    if (!c) result.byPartition.set(partition, (c = { rows: 0, newRows: 0, deadLettered: 0 }));
    return c;
  }

  /**
   * Writes the items, with the report sets in the same transaction; if PostgreSQL refuses them
   * for their data, halves the items (without the sets) until the bad rows stand alone.
   * Returns the sets that were not written, for a transaction of their own once all halves are in.
   */
  private async writeIsolating(
    items: Item[],
    isLost: (partition: number) => boolean,
    result: RoundResult,
    beforeCommit: (() => Promise<void>) | undefined,
    reportSets: readonly ReportSet[] = [],
    overlap = false,
  ): Promise<ReportSet[]> {
    // Checked before every PostgreSQL write, halves included: a partition whose lease was lost
    // (another flusher may be on it) has nothing more written by this one.
    const live = items.filter((i) => !isLost(i.partition));
    const sets = reportSets.filter((s) => !isLost(s.partition));
    if (live.length === 0) return sets;
    let inserted: number;
    let applied: ReportApplyResult | null;
    const partitionOfKey = new Map<string, number>();
    try {
      const written = await this.deps.store.flushRound(
        live.map((i) => i.row),
        sets,
        beforeCommit,
      );
      const refs = written.inserted;
      applied = written.reports;
      inserted = refs.length;
      const itemOfKey = new Map<string, Item>();
      for (const i of live) {
        partitionOfKey.set(packageKey(i.row.ref), i.partition);
        itemOfKey.set(i.entry.key, i);
      }
      for (const ref of refs) {
        const key = packageKey(ref);
        const p = partitionOfKey.get(key);
        if (p !== undefined) this.counts(result, p).newRows++;
        // Created with its count: the set's UPDATE must not add it again (the row's tag says so too).
        const report = itemOfKey.get(key)?.row.report;
        if (p !== undefined && report) {
          result.insertedWithReports.push({ partition: p, key });
          result.reports += report.count;
          this.deps.metrics.reports.inc(report.count);
        }
      }
    } catch (err) {
      if (!isDataError(err)) throw err;
      const only = live[0] as Item;
      if (live.length === 1) {
        const e = err as { code: string; message: string };
        await this.deadLetter(only.partition, [only.entry], { code: e.code, message: e.message }, result);
        return sets;
      }
      const mid = live.length >> 1;
      await this.writeIsolating(live.slice(0, mid), isLost, result, beforeCommit);
      await this.writeIsolating(live.slice(mid), isLost, result, beforeCommit);
      return sets;
    }
    await this.deps.checkpoint?.('after-commit');
    if (overlap) {
      const confirming = this.confirm(live);
      // Awaited by the caller later; a rejection meanwhile is not an unhandled one.
      confirming.catch(() => undefined);
      result.confirmed = confirming;
    } else {
      await this.confirm(live);
    }
    for (const i of live) this.counts(result, i.partition).rows++;
    result.rows += live.length;
    result.newRows += inserted;
    this.deps.metrics.rows.inc(live.length);
    this.deps.metrics.newRows.inc(inserted);
    await this.finishReports(sets, applied, result);
    return [];
  }

  /**
   * Compare-and-delete of a committed write, in each entry's own partition (one script per
   * partition and chunk: one Redis Cluster slot per call). A crash between calls leaves the
   * rest pending, to be re-flushed idempotently.
   */
  private async confirm(items: readonly Item[]): Promise<void> {
    const chunk = Math.max(1, Math.min(CONFIRM_CHUNK, Math.ceil(items.length / 2)));
    let calls = 0;
    for (const [p, group] of groupByPartition(items)) {
      for (let i = 0; i < group.length; i += chunk) {
        if (calls++ > 0) await this.deps.checkpoint?.('mid-confirm');
        await this.deps.buffer.confirm(
          p,
          group.slice(i, i + chunk).map((g) => g.entry),
        );
      }
    }
  }

  private async deadLetter(
    p: number,
    entries: BufferEntry[],
    error: { code: string; message: string },
    result: RoundResult,
  ): Promise<void> {
    const moved = await this.deps.buffer.deadLetter(p, entries, error);
    result.deadLettered += moved;
    this.counts(result, p).deadLettered += moved;
    this.deps.metrics.deadLetters.inc(moved);
    this.deps.logger.warn(
      { partition: p, keys: entries.map((e) => e.key), error },
      'dead-lettered entries PostgreSQL refused',
    );
  }
}
