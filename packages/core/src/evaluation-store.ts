import type { Pool } from 'pg';
import { inTransaction } from './db';
import { packageKey, type PackageRef } from './package-key';
import type { StoredPackage, Verdict, VerdictSource } from './store';
import { PackageStore } from './store';

export interface EvaluationInput extends PackageRef {
  verdict: Verdict;
  source: VerdictSource;
  threatIndex: number;
}

export interface AnalysisClaim extends PackageRef {
  firstSeenAt: Date;
  /** Check requests that carried it, as stored (deltas still in Redis not included). */
  reports: number;
  lastSeenAt: Date | null;
  claimedUntil: Date;
  attempts: number;
}

/**
 * Verdict history and the analysis queue. The current status on `packages` is kept by
 * the statement-level trigger of migration 003; this module only appends evaluations
 * (one statement per batch) and hands out analysis claims.
 */
export class EvaluationStore {
  private readonly packages: PackageStore;

  constructor(private readonly pool: Pool) {
    this.packages = new PackageStore(pool);
  }

  /**
   * Appends a batch of evaluations in one transaction: packages never seen are inserted
   * first, the evaluations go in with one INSERT (so the trigger runs once, set-based),
   * and the packages' resulting status (with the new `rev`) is returned for the
   * cache write-through, which the caller must do after this has committed.
   */
  async record(
    evaluations: readonly EvaluationInput[],
    createdBy: string,
    now = new Date(),
  ): Promise<StoredPackage[]> {
    if (evaluations.length === 0) return [];
    const names = evaluations.map((e) => e.name);
    const versions = evaluations.map((e) => String(e.versionCode));
    const signatures = evaluations.map((e) => e.signature);
    return inTransaction(this.pool, async (client) => {
      // Concurrent batches over overlapping packages must take their locks in one order, or
      // they deadlock (40P01): new keys are inserted in key order, then every row is locked
      // in id order before the trigger's UPDATE touches them.
      const insertNew = () =>
        client.query(
          `INSERT INTO packages (name, version_code, signature, first_seen_at)
         SELECT DISTINCT k.name, k.version_code, k.signature, $4::timestamptz
           FROM unnest($1::text[], $2::bigint[], $3::text[]) AS k(name, version_code, signature)
          ORDER BY k.name, k.version_code, k.signature
         ON CONFLICT (name, version_code, signature) DO NOTHING`,
          [names, versions, signatures, now.toISOString()],
        );
      // How many distinct packages it locked (a key given twice joins twice).
      const lock = async () => {
        const { rows } = await client.query<{ id: string }>(
          `SELECT p.id FROM unnest($1::text[], $2::bigint[], $3::text[]) AS k(name, version_code, signature)
           JOIN packages p ON p.name = k.name AND p.version_code = k.version_code AND p.signature = k.signature
          ORDER BY p.id FOR UPDATE OF p`,
          [names, versions, signatures],
        );
        return new Set(rows.map((r) => r.id)).size;
      };
      const wanted = new Set(evaluations.map((e) => packageKey(e))).size;
      await insertNew();
      // The retention sweep may delete a row between the INSERT (which found it, so inserted
      // nothing) and the lock (which then finds it deleted): insert again rather than drop the
      // evaluation. The sweep never deletes a row it cannot lock, so a second round suffices
      // unless it swept again in between; three are allowed.
      for (let round = 0; (await lock()) < wanted && round < 3; round++) await insertNew();
      // In input order, so that of two evaluations of one source in a batch the later wins.
      await client.query(
        `INSERT INTO evaluations (package_id, source, verdict, threat_index, created_by)
       SELECT p.id, k.source, k.verdict, k.threat_index, $7
         FROM unnest($1::text[], $2::bigint[], $3::text[], $4::verdict_source[], $5::verdict[], $6::real[])
              WITH ORDINALITY AS k(name, version_code, signature, source, verdict, threat_index, ord)
         JOIN packages p ON p.name = k.name AND p.version_code = k.version_code AND p.signature = k.signature
        ORDER BY k.ord`,
        [
          names,
          versions,
          signatures,
          evaluations.map((e) => e.source),
          evaluations.map((e) => e.verdict),
          evaluations.map((e) => e.threatIndex),
          createdBy,
        ],
      );
      const unique = new Map<string, PackageRef>();
      for (const e of evaluations) unique.set(packageKey(e), e);
      const rows = await this.packages.lookupWith(client, [...unique.values()]);
      return [...rows.values()];
    });
  }

  /**
   * Claims up to `limit` packages waiting for analysis, most reported first (what is spreading),
   * ties oldest first. A claim is a lease: not evaluated before `claimedUntil`, the package is
   * handed out again (attempts + 1). SKIP LOCKED keeps concurrent claimers from ever receiving
   * the same package.
   *
   * The order is on a column of `packages`, so no index on the queue can serve it: PostgreSQL
   * joins the claimable queue rows to packages and keeps the top `limit` (a bounded heap sort),
   * linear in the queue's length. An index on packages.reports would not help (the join starts
   * from the queue) and would cost every flush that applies reports; see README Decisions.
   */
  async claim(limit: number, leaseMs: number): Promise<AnalysisClaim[]> {
    const { rows } = await this.pool.query<{
      name: string;
      version_code: string;
      signature: string;
      first_seen_at: Date;
      reports: string;
      last_seen_at: Date | null;
      claimed_until: Date;
      attempts: number;
    }>(
      // The ranking runs unlocked with its own LIMIT, so it is a top-N heap sort; locking right
      // above the sort (FOR UPDATE … LIMIT) would make it sort the whole queue (measured: an
      // external merge sort of 300,000 rows, 1.5 s, against 0.8 s this way). The claimable test is
      // repeated on the locked row, which PostgreSQL re-checks against its latest version, so a
      // row another claimer committed meanwhile is not handed out; 4× candidates leave room for
      // rows concurrent claimers hold (SKIP LOCKED), and a claimer crowded out gets fewer, never twice.
      `WITH c AS (
         SELECT q.package_id FROM (
           SELECT q.package_id, p.reports, q.enqueued_at
             FROM analysis_queue q JOIN packages p ON p.id = q.package_id
            WHERE q.claimed_until IS NULL OR q.claimed_until < now()
            ORDER BY p.reports DESC, q.enqueued_at, q.package_id
            LIMIT $1 * 4
         ) top JOIN analysis_queue q ON q.package_id = top.package_id
          WHERE q.claimed_until IS NULL OR q.claimed_until < now()
          ORDER BY top.reports DESC, top.enqueued_at, top.package_id
          LIMIT $1
          FOR UPDATE OF q SKIP LOCKED
       ), u AS (
         UPDATE analysis_queue q
            SET claimed_until = now() + $2 * interval '1 millisecond', attempts = q.attempts + 1
           FROM c WHERE q.package_id = c.package_id
         RETURNING q.package_id, q.claimed_until, q.attempts, q.enqueued_at
       )
       SELECT p.name, p.version_code, p.signature, p.first_seen_at, p.reports, p.last_seen_at,
              u.claimed_until, u.attempts
         FROM u JOIN packages p ON p.id = u.package_id
        ORDER BY p.reports DESC, u.enqueued_at, u.package_id`,
      [limit, leaseMs],
    );
    return rows.map((r) => ({
      name: r.name,
      versionCode: Number(r.version_code),
      signature: r.signature,
      firstSeenAt: r.first_seen_at,
      reports: Number(r.reports),
      lastSeenAt: r.last_seen_at,
      claimedUntil: r.claimed_until,
      attempts: r.attempts,
    }));
  }
}
