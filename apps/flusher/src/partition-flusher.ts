import {
  LeaseLostError,
  parsePackageKey,
  type BufferEntry,
  type Logger,
  type NewPackage,
  type PackageStore,
  type RedisBuffer,
} from '@safepkg/core';
import type { Checkpoint } from './crash-points';
import type { FlusherMetrics } from './metrics';

export interface PartitionFlushResult {
  partition: number;
  rows: number;
  newRows: number;
  deadLettered: number;
  batches: number;
  ms: number;
}

/** A PostgreSQL error caused by the rows themselves, not by the server being unavailable. */
export function isDataError(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const code = (err as { code?: unknown }).code;
  // 22: data exception, 23: integrity constraint violation, 54000: program limit (e.g. index row too large).
  return typeof code === 'string' && (code.startsWith('22') || code.startsWith('23') || code === '54000');
}

export interface PartitionFlusherDeps {
  buffer: RedisBuffer;
  store: PackageStore;
  metrics: FlusherMetrics;
  logger: Logger;
  batchSize: number;
  /** Called at named points of the protocol; fault tests crash the process there. */
  checkpoint?: Checkpoint;
}

/** The lease as the protocol needs it: renewed between batches, checked before every write. */
export interface HeldLease {
  readonly partition: number;
  renew(): Promise<boolean>;
  /** Throws LeaseLostError if the lease is known to be lost. */
  assertHeld(): void;
}

// Compare-and-delete runs in chunks: each chunk is one atomic script, and a bounded chunk keeps one
// script from blocking every other Redis client for the milliseconds a 10k-entry batch would take.
// A batch is always confirmed in at least two calls so that the mid-confirm fault point exists.
const CONFIRM_CHUNK = 1000;

/**
 * The flush protocol of one partition while holding its lease: snapshot seq, then
 * batches of entries with score ≤ snapshot → one PostgreSQL transaction each →
 * compare-and-delete. Entries PostgreSQL refuses are isolated by halving and
 * dead-lettered; any other failure propagates and leaves the entries pending.
 */
export class PartitionFlusher {
  constructor(private readonly deps: PartitionFlusherDeps) {}

  async flush(lease: HeldLease, shouldStop: () => boolean): Promise<PartitionFlushResult> {
    const { buffer, batchSize } = this.deps;
    const p = lease.partition;
    const started = Date.now();
    const result: PartitionFlushResult = { partition: p, rows: 0, newRows: 0, deadLettered: 0, batches: 0, ms: 0 };
    const snapshot = await buffer.snapshotSeq(p);
    let after: number | null = null;
    for (;;) {
      const batch = await buffer.read(p, after, snapshot, batchSize);
      if (batch.length === 0) break;
      await this.deps.checkpoint?.('after-read');
      const end = this.deps.metrics.batchDuration.startTimer();
      await this.write(lease, batch, result);
      end();
      result.batches++;
      after = (batch[batch.length - 1] as BufferEntry).score;
      if (batch.length < batchSize || shouldStop()) break;
      if (!(await lease.renew())) throw new LeaseLostError(p);
    }
    result.ms = Date.now() - started;
    return result;
  }

  private async write(lease: HeldLease, entries: BufferEntry[], result: PartitionFlushResult): Promise<void> {
    const p = lease.partition;
    const rows: NewPackage[] = [];
    const valid: BufferEntry[] = [];
    const malformed: BufferEntry[] = [];
    for (const e of entries) {
      try {
        rows.push({ ref: parsePackageKey(e.key), firstSeenAt: new Date(e.payload.t) });
        valid.push(e);
      } catch {
        malformed.push(e);
      }
    }
    if (malformed.length > 0) await this.deadLetter(p, malformed, { code: 'malformed_key', message: 'not a package key' }, result);
    await this.writeIsolating(lease, valid, rows, result);
  }

  /** Writes the batch; if PostgreSQL refuses it for its data, halves it until the bad rows stand alone. */
  private async writeIsolating(lease: HeldLease, entries: BufferEntry[], rows: NewPackage[], result: PartitionFlushResult) {
    if (entries.length === 0) return;
    const p = lease.partition;
    // Checked before every PostgreSQL write, halves included: a flusher that lost its lease writes nothing more.
    lease.assertHeld();
    let inserted: number;
    try {
      inserted = (await this.deps.store.insertBatch(rows)).length;
    } catch (err) {
      if (!isDataError(err)) throw err;
      if (entries.length === 1) {
        const e = err as { code: string; message: string };
        await this.deadLetter(p, entries, { code: e.code, message: e.message }, result);
        return;
      }
      const mid = entries.length >> 1;
      await this.writeIsolating(lease, entries.slice(0, mid), rows.slice(0, mid), result);
      await this.writeIsolating(lease, entries.slice(mid), rows.slice(mid), result);
      return;
    }
    await this.deps.checkpoint?.('after-commit');
    await this.confirm(p, entries);
    result.rows += entries.length;
    result.newRows += inserted;
    this.deps.metrics.rows.inc(entries.length);
    this.deps.metrics.newRows.inc(inserted);
  }

  /** Compare-and-delete of a committed batch; a crash between chunks leaves the rest pending, to be re-flushed idempotently. */
  private async confirm(p: number, entries: BufferEntry[]): Promise<void> {
    const chunk = Math.max(1, Math.min(CONFIRM_CHUNK, Math.ceil(entries.length / 2)));
    for (let i = 0; i < entries.length; i += chunk) {
      if (i > 0) await this.deps.checkpoint?.('mid-confirm');
      await this.deps.buffer.confirm(p, entries.slice(i, i + chunk));
    }
  }

  private async deadLetter(
    p: number,
    entries: BufferEntry[],
    error: { code: string; message: string },
    result: PartitionFlushResult,
  ) {
    const moved = await this.deps.buffer.deadLetter(p, entries, error);
    result.deadLettered += moved;
    this.deps.metrics.deadLetters.inc(moved);
    this.deps.logger.warn({ partition: p, keys: entries.map((e) => e.key), error }, 'dead-lettered entries PostgreSQL refused');
  }
}
