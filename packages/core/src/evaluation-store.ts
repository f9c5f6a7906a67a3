import type { Pool } from 'pg';
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
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      // Concurrent batches over overlapping packages must take their locks in one order, or
      // they deadlock (40P01): new keys are inserted in key order, then every row is locked
      // in id order before the trigger's UPDATE touches them.
      await client.query(
        `INSERT INTO packages (name, version_code, signature, first_seen_at)
         SELECT DISTINCT k.name, k.version_code, k.signature, $4::timestamptz
           FROM unnest($1::text[], $2::bigint[], $3::text[]) AS k(name, version_code, signature)
          ORDER BY k.name, k.version_code, k.signature
         ON CONFLICT (name, version_code, signature) DO NOTHING`,
        [names, versions, signatures, now.toISOString()],
      );
      await client.query(
        `SELECT p.id FROM unnest($1::text[], $2::bigint[], $3::text[]) AS k(name, version_code, signature)
           JOIN packages p ON p.name = k.name AND p.version_code = k.version_code AND p.signature = k.signature
          ORDER BY p.id FOR UPDATE OF p`,
        [names, versions, signatures],
      );
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
      await client.query('COMMIT');
      return [...rows.values()];
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  /**
   * Claims up to `limit` packages waiting for analysis, oldest first. A claim is a lease:
   * not evaluated before `claimedUntil`, the package is handed out again (attempts + 1).
   * SKIP LOCKED keeps concurrent claimers from ever receiving the same package.
   */
  async claim(limit: number, leaseMs: number): Promise<AnalysisClaim[]> {
    const { rows } = await this.pool.query<{
      name: string;
      version_code: string;
      signature: string;
      first_seen_at: Date;
      claimed_until: Date;
      attempts: number;
    }>(
      `WITH c AS (
         SELECT package_id FROM analysis_queue
          WHERE claimed_until IS NULL OR claimed_until < now()
          ORDER BY enqueued_at, package_id
          LIMIT $1
          FOR UPDATE SKIP LOCKED
       ), u AS (
         UPDATE analysis_queue q
            SET claimed_until = now() + $2 * interval '1 millisecond', attempts = q.attempts + 1
           FROM c WHERE q.package_id = c.package_id
         RETURNING q.package_id, q.claimed_until, q.attempts, q.enqueued_at
       )
       SELECT p.name, p.version_code, p.signature, p.first_seen_at, u.claimed_until, u.attempts
         FROM u JOIN packages p ON p.id = u.package_id
        ORDER BY u.enqueued_at, u.package_id`,
      [limit, leaseMs],
    );
    return rows.map((r) => ({
      name: r.name,
      versionCode: Number(r.version_code),
      signature: r.signature,
      firstSeenAt: r.first_seen_at,
      claimedUntil: r.claimed_until,
      attempts: r.attempts,
    }));
  }
}
