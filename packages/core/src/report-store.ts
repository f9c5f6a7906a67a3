import type { Pool, PoolClient } from 'pg';
import { packageKey, parsePackageKey, type PackageRef } from './package-key';
import type { ReportSet } from './report-buffer';

type Queryable = Pick<Pool, 'query'> | PoolClient;

/** What applying a round's report sets did. */
export interface ReportApplyResult {
  /** Partitions whose set this statement applied (the ledger row came back). */
  applied: number[];
  /** Partitions whose set was already applied (a re-flush after a crash, or a second flusher). */
  skipped: number[];
  /** Packages of the applied sets that were updated, and that had no row (never expected from a check). */
  updated: number;
  unmatched: number;
  /** Reports added to PostgreSQL by this statement. */
  reports: number;
  /** Delta keys that do not parse (not written by a check): dropped with their set. */
  malformed: string[];
}

/**
 * One statement: advance the ledger's high-water mark of every partition in the round, and
 * add the deltas of exactly those partitions whose mark moved. Rows are locked in id order,
 * the order evaluations lock them in, so the two never deadlock. Runs inside the round's
 * transaction (after its INSERT, so packages the same round inserted are matched), or alone
 * as one autocommit statement when a tick has deltas but no entries.
 */
const APPLY_REPORTS = `WITH led AS (
    INSERT INTO report_flushes AS r (partition, epoch, flush_id)
    SELECT * FROM unnest($1::int[], $9::text[], $2::bigint[])
    ON CONFLICT (partition, epoch) DO UPDATE SET flush_id = EXCLUDED.flush_id, flushed_at = now()
      WHERE r.flush_id < EXCLUDED.flush_id
    RETURNING partition
  ), d AS (
    SELECT * FROM unnest($3::int[], $4::text[], $5::bigint[], $6::text[], $7::bigint[], $8::timestamptz[], $10::bigint[])
      AS d(partition, name, version_code, signature, n, t, tag)
    WHERE d.partition IN (SELECT partition FROM led)
  ), locked AS (
    -- A row inserted with this set's count carries its tag: its delta is in already (due = false).
    SELECT p.id, d.n, d.t, p.reports_set IS DISTINCT FROM d.tag AS due FROM d
      JOIN packages p ON p.name = d.name AND p.version_code = d.version_code AND p.signature = d.signature
     ORDER BY p.id
       FOR UPDATE OF p
  ), upd AS (
    UPDATE packages p SET reports = p.reports + l.n, last_seen_at = GREATEST(p.last_seen_at, l.t)
      FROM locked l WHERE p.id = l.id AND l.due
    RETURNING l.n
  )
  SELECT (SELECT coalesce(array_agg(partition), '{}') FROM led) AS applied,
         (SELECT count(*) FROM upd) AS updated,
         (SELECT coalesce(sum(n), 0) FROM upd) AS reports,
         (SELECT count(*) FROM d) AS wanted,
         (SELECT count(*) FROM locked) AS matched`;

export async function applyReportSets(db: Queryable, sets: readonly ReportSet[]): Promise<ReportApplyResult> {
  const result: ReportApplyResult = {
    applied: [],
    skipped: [],
    updated: 0,
    unmatched: 0,
    reports: 0,
    malformed: [],
  };
  if (sets.length === 0) return result;
  const cols: [number[], string[], string[], string[], string[], string[], string[]] = [
    [],
    [],
    [],
    [],
    [],
    [],
    [],
  ];
  for (const set of sets) {
    for (const d of set.deltas) {
      let ref: PackageRef;
      try {
        ref = parsePackageKey(d.key);
      } catch {
        result.malformed.push(d.key);
        continue;
      }
      cols[0].push(set.partition);
      cols[1].push(ref.name);
      cols[2].push(String(ref.versionCode));
      cols[3].push(ref.signature);
      cols[4].push(String(d.count));
      cols[5].push(new Date(d.lastSeenAt).toISOString());
      cols[6].push(set.tag);
    }
  }
  const { rows } = await db.query<{
    applied: number[];
    updated: string;
    reports: string;
    wanted: string;
    matched: string;
  }>({
    // Unnamed: a named statement breaks behind a transaction pooler (see statementName in db.ts),
    // and this one runs once per round, degraded request or admin call, where a parse costs nothing.
    text: APPLY_REPORTS,
    values: [
      sets.map((s) => s.partition),
      sets.map((s) => String(s.flushId)),
      ...cols.slice(0, 6),
      sets.map((s) => s.epoch),
      cols[6],
    ],
  });
  const row = rows[0] as {
    applied: number[];
    updated: string;
    reports: string;
    wanted: string;
    matched: string;
  };
  const applied = new Set(row.applied.map(Number));
  result.applied = sets.map((s) => s.partition).filter((p) => applied.has(p));
  result.skipped = sets.map((s) => s.partition).filter((p) => !applied.has(p));
  result.updated = Number(row.updated);
  result.unmatched = Number(row.wanted) - Number(row.matched);
  result.reports = Number(row.reports);
  return result;
}

/**
 * Counts one report of each package straight in PostgreSQL: the check path's fallback when
 * it answered without Redis (the packages were written directly too). Rows in id order.
 */
export async function countReportsDirect(
  db: Queryable,
  refs: readonly PackageRef[],
  at: Date,
): Promise<number> {
  if (refs.length === 0) return 0;
  const unique = new Map<string, PackageRef>();
  for (const r of refs) unique.set(packageKey(r), r);
  const list = [...unique.values()];
  const { rowCount } = await db.query({
    // Unnamed, as apply-reports: safe behind a transaction pooler.
    text: `WITH locked AS (
        SELECT p.id FROM unnest($1::text[], $2::bigint[], $3::text[]) AS k(name, version_code, signature)
          JOIN packages p ON p.name = k.name AND p.version_code = k.version_code AND p.signature = k.signature
         ORDER BY p.id
           FOR UPDATE OF p
      )
      UPDATE packages p SET reports = p.reports + 1, last_seen_at = GREATEST(p.last_seen_at, $4::timestamptz)
        FROM locked l WHERE p.id = l.id`,
    values: [
      list.map((r) => r.name),
      list.map((r) => String(r.versionCode)),
      list.map((r) => r.signature),
      at.toISOString(),
    ],
  });
  return rowCount ?? 0;
}
