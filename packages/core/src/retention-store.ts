import type { Pool } from 'pg';
import { inTransaction } from './db';
import { packageKey } from './package-key';

/**
 * Which packages the retention sweep may delete, in ONE place: the lock statement and the
 * DELETE both use it (the DELETE re-checks it on a fresh snapshot while the rows are locked).
 * `$threshold` is the cut-off (timestamptz): a package's last report is last_seen_at, or
 * first_seen_at where there is none; GREATEST ignores the NULL, and also keeps a row whose
 * last_seen_at is older than its first_seen_at (clocks of different api pods) by the later one.
 */
function sweepable(threshold: string): string {
  return `p.verdict IS NULL
       AND GREATEST(p.first_seen_at, p.last_seen_at) < ${threshold}
       AND NOT EXISTS (SELECT 1 FROM evaluations e WHERE e.package_id = p.id)
       -- A package whose signing certificate has a verdict is kept: it is answered from it, and
       -- an analyst looking at the signer wants its packages (signers only holds real verdicts).
       AND NOT EXISTS (SELECT 1 FROM signers s WHERE s.signature = p.signature)`;
}

/** Where a pass of the sweep has got to in the index packages_retention (first_seen_at, id). */
export interface RetentionCursor {
  /** first_seen_at as PostgreSQL prints it (microseconds kept; a JS Date would lose them). */
  firstSeenAt: string;
  id: string;
}

export interface SweepBatchResult {
  /** Index entries read (first seen before the cut-off, no verdict). */
  scanned: number;
  /** Where the next batch starts; null once the pass reached the cut-off (start again from the top). */
  cursor: RetentionCursor | null;
  /** Rows that were still sweepable and not locked by anyone else (SKIP LOCKED). */
  locked: number;
  /** Of those, kept because Redis holds a buffer entry or report deltas for them. */
  held: number;
  /** Package keys deleted by this batch (committed). */
  deleted: string[];
  /** analysis_queue rows deleted with them. */
  queueRows: number;
}

export interface SweepBatchOptions {
  threshold: Date;
  after: RetentionCursor | null;
  limit: number;
  /** Asked while the candidates' rows are locked: the keys to keep (pending in Redis). */
  held: (packageKeys: readonly string[]) => Promise<Set<string>>;
  /**
   * Fault-test hook: runs after the batch's DELETE, before its COMMIT (inside the transaction),
   * only when the batch deleted something. A process killed there leaves a transaction that
   * PostgreSQL rolls back when the connection drops.
   */
  beforeCommit?: () => void | Promise<void>;
}

/** An error code PostgreSQL gives a batch that timed out on a lock or a statement. */
export const SWEEP_TIMEOUT_CODES = new Set(['55P03', '57014']);

/**
 * The retention sweep's PostgreSQL side: one batch = one short transaction that reads up to
 * `limit` index entries from the cursor, locks the ones still sweepable with SKIP LOCKED (a
 * row an evaluation, a report flush or a direct write holds is skipped, never waited on), asks
 * Redis which of them a device reported lately, and deletes the rest with their queue rows.
 *
 * Why the Redis question is asked under the row locks: the flusher applies report deltas by
 * locking the rows (FOR UPDATE) while its in-flight delta set exists in Redis, and clears that
 * set only after COMMIT. So at the moment of the question either the deltas are still visible
 * in Redis (live or in flight: the row is kept), or the flush committed before the lock and the
 * row's new last_seen_at fails the re-check, or the flush is waiting on this batch's lock and
 * its in-flight set is visible. No accepted delta of the flusher's is applied to a deleted row.
 */
export class RetentionStore {
  constructor(
    private readonly pool: Pool,
    private readonly timeouts: { lockTimeoutMs: number; statementTimeoutMs: number },
  ) {}

  async sweepBatch(options: SweepBatchOptions): Promise<SweepBatchResult> {
    const { threshold, after, limit } = options;
    return inTransaction(this.pool, async (client) => {
      // SET LOCAL through set_config(…, true): transaction-scoped, so safe behind a transaction pooler.
      await client.query(
        `SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', $2, true)`,
        [`${this.timeouts.lockTimeoutMs}ms`, `${this.timeouts.statementTimeoutMs}ms`],
      );
      // The partial index packages_retention (007) serves this as a bounded range scan.
      const scanned = await client.query<{ id: string; t: string }>(
        `SELECT p.id, p.first_seen_at::text AS t FROM packages p
        WHERE p.verdict IS NULL AND p.first_seen_at < $1::timestamptz
          AND (p.first_seen_at, p.id) > ($2::timestamptz, $3::bigint)
        ORDER BY p.first_seen_at, p.id
        LIMIT $4`,
        [threshold.toISOString(), after?.firstSeenAt ?? '-infinity', after?.id ?? '0', limit],
      );
      const last = scanned.rows[scanned.rows.length - 1];
      const cursor = scanned.rows.length < limit || !last ? null : { firstSeenAt: last.t, id: last.id };
      const result: SweepBatchResult = {
        scanned: scanned.rows.length,
        cursor,
        locked: 0,
        held: 0,
        deleted: [],
        queueRows: 0,
      };
      if (scanned.rows.length === 0) {
        return result;
      }
      // Re-checked on each row's latest version as it is locked (READ COMMITTED re-evaluates the
      // WHERE of a row updated since the snapshot): a report flushed meanwhile drops it.
      const locked = await client.query<{
        id: string;
        name: string;
        version_code: string;
        signature: string;
      }>(
        `SELECT p.id, p.name, p.version_code, p.signature FROM packages p
        WHERE p.id = ANY($1::bigint[]) AND ${sweepable('$2::timestamptz')}
        ORDER BY p.id
        FOR UPDATE OF p SKIP LOCKED`,
        [scanned.rows.map((r) => r.id), threshold.toISOString()],
      );
      result.locked = locked.rows.length;
      const byId = new Map(
        locked.rows.map((r) => [
          r.id,
          packageKey({ name: r.name, versionCode: Number(r.version_code), signature: r.signature }),
        ]),
      );
      const held = byId.size > 0 ? await options.held([...byId.values()]) : new Set<string>();
      result.held = held.size;
      const ids = [...byId].filter(([, key]) => !held.has(key)).map(([id]) => id);
      if (ids.length > 0) {
        // The same test again on a new snapshot: an evaluation that committed before the lock was
        // taken (its trigger set a verdict, or its row is in evaluations) is never deleted. While
        // the locks are held no evaluation can add a row (its foreign-key check waits for them).
        const deleted = await client.query<{ id: string; queued: string }>(
          `WITH d AS (
           DELETE FROM packages p WHERE p.id = ANY($1::bigint[]) AND ${sweepable('$2::timestamptz')}
           RETURNING p.id
         ), q AS (
           DELETE FROM analysis_queue q USING d WHERE q.package_id = d.id RETURNING q.package_id
         )
         SELECT d.id, (SELECT count(*) FROM q) AS queued FROM d`,
          [ids, threshold.toISOString()],
        );
        result.deleted = deleted.rows.map((r) => byId.get(r.id) as string);
        result.queueRows = Number(deleted.rows[0]?.queued ?? 0);
        if (result.deleted.length > 0) await options.beforeCommit?.();
      }
      return result;
    });
  }
}
