import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Pool, PoolClient } from 'pg';

type Queryable = Pick<Pool, 'query'> | PoolClient;
import { from as copyFrom } from 'pg-copy-streams';
import { statementName } from './db';
import { packageKey, type PackageRef } from './package-key';
import type { ReportSet } from './report-buffer';
import { applyReportSets, countReportsDirect, type ReportApplyResult } from './report-store';
import { lookupSigners, type StoredSigner } from './signer-store';

export type Verdict = 'safe' | 'malicious' | 'suspicious';
export type VerdictSource = 'manual' | 'model';

/** A package as PostgreSQL knows it. */
export interface StoredPackage extends PackageRef {
  id: string;
  firstSeenAt: Date;
  verdict: Verdict | null;
  threatIndex: number | null;
  source: VerdictSource | null;
  rev: number;
}

export interface NewPackage {
  ref: PackageRef;
  firstSeenAt: Date;
  /**
   * Its count in the tick's report set, written with the row if the insert creates it (and the
   * row stamped with the set's tag, so the set's UPDATE skips it): one write per new package.
   */
  report?: { count: number; lastSeenAt: number; tag: string };
}

interface PackageRowDb {
  id: string;
  name: string;
  version_code: string;
  signature: string;
  first_seen_at: Date;
  verdict: Verdict | null;
  threat_index: number | null;
  source: VerdictSource | null;
  rev: number;
}

const PACKAGE_COLUMNS =
  'p.id, p.name, p.version_code, p.signature, p.first_seen_at, p.verdict, p.threat_index, p.source, p.rev';

function toStored(r: PackageRowDb): StoredPackage {
  return {
    id: String(r.id),
    name: r.name,
    versionCode: Number(r.version_code),
    signature: r.signature,
    firstSeenAt: r.first_seen_at,
    verdict: r.verdict,
    threatIndex: r.threat_index,
    source: r.source,
    rev: r.rev,
  };
}

function keyArrays(refs: readonly PackageRef[]): [string[], string[], string[]] {
  const names: string[] = [];
  const versions: string[] = [];
  const signatures: string[] = [];
  for (const r of refs) {
    names.push(r.name);
    versions.push(String(r.versionCode));
    signatures.push(r.signature);
  }
  return [names, versions, signatures];
}

/** COPY text format: backslash, tab, newline and carriage return must be escaped. */
function copyText(value: string): string {
  return /[\\\t\n\r]/.test(value)
    ? value.replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n').replace(/\r/g, '\\r')
    : value;
}

const STAGING_COLUMNS =
  'name text, version_code bigint, signature text, first_seen_at timestamptz, reports bigint, last_seen_at timestamptz, reports_set bigint';

/**
 * The staging table is a session temp table created (if missing) inside each flush
 * transaction, emptied at its COMMIT, and named after its definition. That keeps it correct
 * behind a transaction pooler, where sessions are server connections shared by clients: the
 * transaction creates it on whichever server connection it runs on, no row outlives the
 * transaction that wrote it, and a server connection still holding the table of an older
 * flusher version (other columns; pgbouncer keeps connections across app rollouts) never
 * matches this name. ON COMMIT DROP would be as safe but measured 3-12 ms more per
 * transaction here (catalog inserts and deletes each time; README "Scaling").
 */
const STAGING_TABLE = `flush_staging_${createHash('sha1').update(STAGING_COLUMNS).digest('hex').slice(0, 8)}`;
const STAGING_DDL = `CREATE TEMP TABLE IF NOT EXISTS ${STAGING_TABLE} (${STAGING_COLUMNS}) ON COMMIT DELETE ROWS`;

// Sorting by the key makes the index inserts walk the B-tree in order.
const STAGING_INSERT = `WITH ins AS (
    INSERT INTO packages (name, version_code, signature, first_seen_at, reports, last_seen_at, reports_set)
    SELECT name, version_code, signature, first_seen_at, coalesce(reports, 0),
           GREATEST(first_seen_at, last_seen_at), reports_set
      FROM ${STAGING_TABLE}
    ORDER BY name, version_code, signature
    ON CONFLICT (name, version_code, signature) DO NOTHING
    RETURNING id, name, version_code, signature
  ), queued AS (
    INSERT INTO analysis_queue (package_id) SELECT id FROM ins ON CONFLICT DO NOTHING
  )
  SELECT name, version_code, signature FROM ins`;

/** PostgreSQL access for the package tables: lookups and the two write paths. */
export class PackageStore {
  constructor(readonly pool: Pool) {}

  /** One query for any number of keys: `unnest` of key arrays joined to the covering index. */
  lookupMany(refs: readonly PackageRef[]): Promise<Map<string, StoredPackage>> {
    return this.lookupWith(this.pool, refs);
  }

  /** The current verdicts of these signing certificates (signer-store.ts); signatures without one are absent. */
  lookupSigners(signatures: readonly string[]): Promise<Map<string, StoredSigner>> {
    return lookupSigners(this.pool, this.pool, signatures);
  }

  /** lookupMany on a given connection (inside a caller's transaction). */
  async lookupWith(db: Queryable, refs: readonly PackageRef[]): Promise<Map<string, StoredPackage>> {
    const found = new Map<string, StoredPackage>();
    if (refs.length === 0) return found;
    const { rows } = await db.query<PackageRowDb>({
      name: statementName(this.pool, 'safepkg-lookup-many'),
      text: `SELECT ${PACKAGE_COLUMNS}
        FROM unnest($1::text[], $2::bigint[], $3::text[]) AS k(name, version_code, signature)
        JOIN packages p ON p.name = k.name AND p.version_code = k.version_code AND p.signature = k.signature`,
      values: keyArrays(refs),
    });
    for (const r of rows) {
      const s = toStored(r);
      found.set(packageKey(s), s);
    }
    return found;
  }

  /**
   * The flush write: one transaction of a constant number of statements whatever the
   * batch size (BEGIN, staging DDL, COPY, INSERT … ON CONFLICT DO NOTHING RETURNING with
   * the analysis_queue insert in the same statement, COMMIT). Returns the packages that
   * were really new; each of them, and only they, was queued for analysis.
   */
  async insertBatch(rows: readonly NewPackage[]): Promise<PackageRef[]> {
    return (await this.flushRound(rows, [])).inserted;
  }

  /**
   * insertBatch plus the report sets of the partitions this round finishes, applied in the
   * same transaction after the INSERT (one more statement), each set at most once by the
   * ledger. With report sets but no rows it is one autocommit statement; with neither, nothing.
   * `beforeCommit` is awaited just before the COMMIT (before the autocommit statement), and a
   * throw rolls the transaction back: the flusher orders its rounds' Redis confirms with it.
   */
  async flushRound(
    rows: readonly NewPackage[],
    reports: readonly ReportSet[],
    beforeCommit?: () => Promise<void>,
  ): Promise<{ inserted: PackageRef[]; reports: ReportApplyResult | null }> {
    if (rows.length === 0) {
      if (reports.length === 0) return { inserted: [], reports: null };
      await beforeCommit?.();
      return { inserted: [], reports: await applyReportSets(this.pool, reports) };
    }
    const client = await this.pool.connect();
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      await client.query(STAGING_DDL);
      await this.copyStaging(client, rows);
      const { rows: inserted } =
        await client.query<Pick<PackageRowDb, 'name' | 'version_code' | 'signature'>>(STAGING_INSERT);
      const applied = reports.length > 0 ? await applyReportSets(client, reports) : null;
      await beforeCommit?.();
      await client.query('COMMIT');
      return {
        inserted: inserted.map((r) => ({
          name: r.name,
          versionCode: Number(r.version_code),
          signature: r.signature,
        })),
        reports: applied,
      };
    } catch (err) {
      broken = err as Error;
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      // A connection that failed mid-COPY may be unusable: discard it rather than pool it.
      client.release(broken);
    }
  }

  private async copyStaging(client: PoolClient, rows: readonly NewPackage[]): Promise<void> {
    const copy = client.query(
      copyFrom(
        `COPY ${STAGING_TABLE} (name, version_code, signature, first_seen_at, reports, last_seen_at, reports_set) FROM STDIN`,
      ),
    );
    function* lines(): Generator<string> {
      let chunk = '';
      for (const { ref, firstSeenAt, report } of rows) {
        const counted = report
          ? `${report.count}\t${new Date(report.lastSeenAt).toISOString()}\t${report.tag}`
          : '\\N\t\\N\t\\N';
        chunk += `${copyText(ref.name)}\t${copyText(String(ref.versionCode))}\t${copyText(ref.signature)}\t${firstSeenAt.toISOString()}\t${counted}\n`;
        if (chunk.length > 65536) {
          yield chunk;
          chunk = '';
        }
      }
      if (chunk) yield chunk;
    }
    await pipeline(Readable.from(lines()), copy);
  }

  /**
   * The `WRITE_MODE=direct` baseline: insert a request's unknown packages on the request
   * path (one statement, queueing the new ones for analysis) and return them all as stored.
   */
  async insertDirect(rows: readonly NewPackage[]): Promise<Map<string, StoredPackage>> {
    const out = new Map<string, StoredPackage>();
    if (rows.length === 0) return out;
    const [names, versions, signatures] = keyArrays(rows.map((r) => r.ref));
    const { rows: inserted } = await this.pool.query<PackageRowDb>({
      name: statementName(this.pool, 'safepkg-insert-direct'),
      text: `WITH ins AS (
          INSERT INTO packages AS p (name, version_code, signature, first_seen_at, last_seen_at)
          SELECT *, first_seen_at FROM unnest($1::text[], $2::bigint[], $3::text[], $4::timestamptz[])
            AS k(name, version_code, signature, first_seen_at)
          -- Every writer takes the key locks in one order: two requests with overlapping
          -- packages in different orders would otherwise deadlock (40P01).
          ORDER BY name, version_code, signature
          ON CONFLICT (name, version_code, signature) DO NOTHING
          RETURNING ${PACKAGE_COLUMNS}
        ), queued AS (
          INSERT INTO analysis_queue (package_id) SELECT id FROM ins ON CONFLICT DO NOTHING
        )
        SELECT * FROM ins p`,
      values: [names, versions, signatures, rows.map((r) => r.firstSeenAt.toISOString())],
    });
    for (const r of inserted) {
      const s = toStored(r);
      out.set(packageKey(s), s);
    }
    // Rows another writer inserted concurrently conflict and are not returned: read them.
    if (out.size < rows.length) {
      const missing = rows.filter((r) => !out.has(packageKey(r.ref))).map((r) => r.ref);
      for (const [k, s] of await this.lookupMany(missing)) out.set(k, s);
    }
    return out;
  }

  /** Counts one report of each package in PostgreSQL (the check path without Redis). */
  countReportsDirect(refs: readonly PackageRef[], at: Date): Promise<number> {
    return countReportsDirect(this.pool, refs, at);
  }
}
