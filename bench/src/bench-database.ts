import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { listMigrations, migrate } from '@safepkg/core';
import { Client } from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import type { Catalogue } from './catalogue';

let benchServer: string | null = null;

/** Points every database of this invocation at a private server (the split topology's). */
export function useBenchServer(url: string | null): void {
  benchServer = url;
}

/** The server the benchmark creates its own databases on (never touches any other database). */
export function pgUrl(database = 'postgres'): string {
  const u = new URL(benchServer ?? process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres');
  u.pathname = `/${database}`;
  return u.toString();
}

export const BENCH_DATABASE = 'safepkg_bench';
const TEMPLATE_PREFIX = 'safepkg_bench_tpl_';

export async function withClient<T>(database: string, fn: (c: Client) => Promise<T>): Promise<T> {
  const c = new Client({ connectionString: pgUrl(database) });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** COPY rows (already tab-separated text lines) into a table. */
export async function copyLines(c: Client, copySql: string, lines: Iterable<string>): Promise<void> {
  function* chunks(): Generator<string> {
    let chunk = '';
    for (const l of lines) {
      chunk += l;
      if (chunk.length > 1 << 20) {
        yield chunk;
        chunk = '';
      }
    }
    if (chunk) yield chunk;
  }
  await pipeline(Readable.from(chunks()), c.query(copyFrom(copySql)));
}

/**
 * A migrated database holding the known catalogue, built once per (migrations, catalogue)
 * and copied for every run, so that each mode starts from exactly the same data.
 */
export async function ensureBenchTemplate(catalogue: Catalogue, log: (m: string) => void): Promise<string> {
  const digest = createHash('sha1');
  for (const m of listMigrations()) digest.update(m.name).update(m.sql);
  digest.update(JSON.stringify(catalogue.options));
  const name = `${TEMPLATE_PREFIX}${digest.digest('hex').slice(0, 12)}`;
  const exists = await withClient(
    'postgres',
    async (c) => (await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).rowCount,
  );
  if (exists) return name;
  log(`building template ${name} with ${catalogue.options.knownApps} known apps`);
  await withClient('postgres', async (c) => {
    // Older templates of the benchmark (other migrations or catalogue) are ours to replace.
    const old = await c.query<{ datname: string }>(
      `SELECT datname FROM pg_database WHERE datname LIKE '${TEMPLATE_PREFIX}%'`,
    );
    for (const r of old.rows) {
      await c.query(`ALTER DATABASE ${r.datname} WITH IS_TEMPLATE false`);
      await c.query(`DROP DATABASE ${r.datname}`);
    }
    await c.query(`CREATE DATABASE ${name}_building`);
  });
  await migrate(pgUrl(`${name}_building`));
  await withClient(`${name}_building`, async (c) => {
    const seenAt = new Date(Date.UTC(2026, 0, 1)).toISOString();
    function* rows(): Generator<string> {
      for (let i = 0; i < catalogue.options.knownApps; i++) {
        const p = catalogue.known(i);
        yield `${p.name}\t${p.versionCode}\t${p.signature}\t${seenAt}\n`;
      }
    }
    await copyLines(c, 'COPY packages (name, version_code, signature, first_seen_at) FROM STDIN', rows());
    await c.query('VACUUM ANALYZE');
  });
  await withClient('postgres', async (c) => {
    await c.query(`ALTER DATABASE ${name}_building RENAME TO ${name}`);
    await c.query(`ALTER DATABASE ${name} WITH IS_TEMPLATE true`);
  });
  return name;
}

/** Drops and recreates the benchmark's own database from the template. */
export async function resetBenchDatabase(template: string): Promise<string> {
  await withClient('postgres', async (c) => {
    await c.query(`DROP DATABASE IF EXISTS ${BENCH_DATABASE} WITH (FORCE)`);
    await c.query(`CREATE DATABASE ${BENCH_DATABASE} TEMPLATE ${template}`);
  });
  return pgUrl(BENCH_DATABASE);
}

export interface WriteStats {
  /** pg_stat_database deltas for the benchmark database (reads included in xact_commit). */
  xactCommit: number;
  xactRollback: number;
  tupInserted: number;
}

export async function databaseStats(database = BENCH_DATABASE): Promise<WriteStats> {
  return withClient('postgres', async (c) => {
    await c.query('SELECT pg_stat_clear_snapshot()');
    const { rows } = await c.query<{ xact_commit: string; xact_rollback: string; tup_inserted: string }>(
      'SELECT xact_commit, xact_rollback, tup_inserted FROM pg_stat_database WHERE datname = $1',
      [database],
    );
    const r = rows[0];
    return {
      xactCommit: Number(r?.xact_commit ?? 0),
      xactRollback: Number(r?.xact_rollback ?? 0),
      tupInserted: Number(r?.tup_inserted ?? 0),
    };
  });
}

export interface InsertedRows {
  /** Rows added to `packages` since the seed. */
  rows: number;
  /**
   * Distinct inserting transactions of those rows (their `xmin`): exactly the committed
   * write transactions that created packages, whoever ran them, and blind to other
   * databases and to read-only transactions.
   */
  writeTransactions: number;
  queued: number;
}

export async function insertedSince(seedRows: number, database = BENCH_DATABASE): Promise<InsertedRows> {
  return withClient(database, async (c) => {
    const { rows } = await c.query<{ rows: string; xacts: string; queued: string }>(
      `SELECT count(*) AS rows, count(DISTINCT xmin::text) AS xacts, (SELECT count(*) FROM analysis_queue) AS queued
         FROM packages WHERE id > $1`,
      [seedRows],
    );
    const r = rows[0];
    return {
      rows: Number(r?.rows ?? 0),
      writeTransactions: Number(r?.xacts ?? 0),
      queued: Number(r?.queued ?? 0),
    };
  });
}
