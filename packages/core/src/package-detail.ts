import type { Pool } from 'pg';
import type { PackageRef } from './package-key';
import type { Verdict, VerdictSource } from './store';

/** Most evaluations one package view lists (newest first); the total is given beside them. */
export const DETAIL_EVALUATIONS = 50;

export interface EvaluationRecord {
  verdict: Verdict;
  source: VerdictSource;
  threatIndex: number;
  createdAt: Date;
  createdBy: string;
}

/** Everything PostgreSQL holds about one package, for the admin package view. */
export interface StoredPackageDetail {
  firstSeenAt: Date;
  lastSeenAt: Date | null;
  reports: number;
  verdict: Verdict | null;
  threatIndex: number | null;
  source: VerdictSource | null;
  evaluations: EvaluationRecord[];
  evaluationsTotal: number;
  /** Null when not waiting for analysis (analysed, or never queued). */
  analysis: { enqueuedAt: Date; claimedUntil: Date | null; attempts: number } | null;
}

/** One package's row, analysis state and latest evaluations, in one query (admin route, not the check path). */
export async function packageDetail(
  pool: Pick<Pool, 'query'>,
  ref: PackageRef,
): Promise<StoredPackageDetail | null> {
  const { rows } = await pool.query<{
    first_seen_at: Date;
    last_seen_at: Date | null;
    reports: string;
    verdict: Verdict | null;
    threat_index: number | null;
    source: VerdictSource | null;
    enqueued_at: Date | null;
    claimed_until: Date | null;
    attempts: number | null;
    evaluations_total: string;
    evaluations: {
      verdict: Verdict;
      source: VerdictSource;
      threat_index: number;
      created_at: string;
      created_by: string;
    }[];
  }>({
    // Unnamed, as apply-reports: safe behind a transaction pooler.
    text: `SELECT p.first_seen_at, p.last_seen_at, p.reports, p.verdict, p.threat_index, p.source,
                  q.enqueued_at, q.claimed_until, q.attempts,
                  (SELECT count(*) FROM evaluations e WHERE e.package_id = p.id) AS evaluations_total,
                  coalesce((SELECT json_agg(e ORDER BY e.id DESC) FROM (
                      SELECT id, verdict, source, threat_index, created_at, created_by FROM evaluations
                       WHERE package_id = p.id ORDER BY id DESC LIMIT $4) e), '[]') AS evaluations
             FROM packages p LEFT JOIN analysis_queue q ON q.package_id = p.id
            WHERE p.name = $1 AND p.version_code = $2 AND p.signature = $3`,
    values: [ref.name, ref.versionCode, ref.signature, DETAIL_EVALUATIONS],
  });
  const r = rows[0];
  if (!r) return null;
  return {
    firstSeenAt: r.first_seen_at,
    lastSeenAt: r.last_seen_at,
    reports: Number(r.reports),
    verdict: r.verdict,
    threatIndex: r.threat_index,
    source: r.source,
    evaluations: r.evaluations.map((e) => ({
      verdict: e.verdict,
      source: e.source,
      threatIndex: e.threat_index,
      createdAt: new Date(e.created_at),
      createdBy: e.created_by,
    })),
    evaluationsTotal: Number(r.evaluations_total),
    analysis:
      r.enqueued_at === null
        ? null
        : { enqueuedAt: r.enqueued_at, claimedUntil: r.claimed_until, attempts: r.attempts ?? 0 },
  };
}
