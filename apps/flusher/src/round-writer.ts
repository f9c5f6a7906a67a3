import {
  packageKey,
  parsePackageKey,
  type BufferEntry,
  type Logger,
  type NewPackage,
  type PackageStore,
  type RedisBuffer,
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
}

export interface RoundWriterDeps {
  buffer: RedisBuffer;
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

  /** `isLost(p)` is asked before every PostgreSQL write: a partition whose lease is gone has nothing more written. */
  async write(round: readonly RoundEntry[], isLost: (partition: number) => boolean): Promise<RoundResult> {
    const result: RoundResult = { rows: 0, newRows: 0, deadLettered: 0, byPartition: new Map() };
    const valid: Item[] = [];
    const malformed: RoundEntry[] = [];
    for (const { partition, entry } of round) {
      try {
        valid.push({
          partition,
          entry,
          row: { ref: parsePackageKey(entry.key), firstSeenAt: new Date(entry.payload.t) },
        });
      } catch {
        malformed.push({ partition, entry });
      }
    }
    for (const [p, group] of groupByPartition(malformed)) {
      const entries = group.map((g) => g.entry);
      await this.deadLetter(p, entries, { code: 'malformed_key', message: 'not a package key' }, result);
    }
    await this.writeIsolating(valid, isLost, result);
    return result;
  }

  private counts(result: RoundResult, partition: number): PartitionCounts {
    let c = result.byPartition.get(partition);
    if (!c) result.byPartition.set(partition, (c = { rows: 0, newRows: 0, deadLettered: 0 }));
    return c;
  }

  /** Writes the items; if PostgreSQL refuses them for their data, halves them until the bad rows stand alone. */
  private async writeIsolating(
    items: Item[],
    isLost: (partition: number) => boolean,
    result: RoundResult,
  ): Promise<void> {
    // Checked before every PostgreSQL write, halves included: a partition whose lease was lost
    // (another flusher may be on it) has nothing more written by this one.
    const live = items.filter((i) => !isLost(i.partition));
    if (live.length === 0) return;
    let inserted: number;
    const partitionOfKey = new Map<string, number>();
    try {
      const refs = await this.deps.store.insertBatch(live.map((i) => i.row));
      inserted = refs.length;
      for (const i of live) partitionOfKey.set(packageKey(i.row.ref), i.partition);
      for (const ref of refs) {
        const p = partitionOfKey.get(packageKey(ref));
        if (p !== undefined) this.counts(result, p).newRows++;
      }
    } catch (err) {
      if (!isDataError(err)) throw err;
      const only = live[0] as Item;
      if (live.length === 1) {
        const e = err as { code: string; message: string };
        await this.deadLetter(only.partition, [only.entry], { code: e.code, message: e.message }, result);
        return;
      }
      const mid = live.length >> 1;
      await this.writeIsolating(live.slice(0, mid), isLost, result);
      await this.writeIsolating(live.slice(mid), isLost, result);
      return;
    }
    await this.deps.checkpoint?.('after-commit');
    await this.confirm(live);
    for (const i of live) this.counts(result, i.partition).rows++;
    result.rows += live.length;
    result.newRows += inserted;
    this.deps.metrics.rows.inc(live.length);
    this.deps.metrics.newRows.inc(inserted);
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
