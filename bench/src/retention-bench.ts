import { randomBytes } from 'node:crypto';
import { heldInRedis, KeySchema, migrate, RetentionStore, type RetentionCursor } from '@safepkg/core';
import { Redis } from 'ioredis';
import type { Client } from 'pg';
import { Pool } from 'pg';
import { copyLines, pgUrl, withClient } from './bench-database';
import { Catalogue } from './catalogue';
import { LookupProbe } from './lookup-probe';
import { deletePrefix } from './redis-prefix';
import { percentiles, round } from './stats';

/**
 * Issue 16's retention measurement, in a scratch database of its own: lookup p99 (the lookup
 * probe's closed loops over packages that stay) without a sweep, then while `rows` old
 * packages are swept in RETENTION_BATCH_SIZE batches by the flusher's own batch code
 * (RetentionStore, with the Redis hold check against a bench prefix), pausing
 * RETENTION_BATCH_PAUSE_MS between batches as the sweeper does; and the table's and
 * indexes' sizes and dead tuples before, after the sweep and after a VACUUM.
 * Autovacuum is off on the table for the run, so that what the sweep leaves is measured, not
 * whatever autovacuum got to; the VACUUM afterwards is what autovacuum would have to do.
 */
const RETENTION_DATABASE = 'safepkg_bench_retention';

export interface RetentionOptions {
  /** Old packages to sweep (the integrator runs 1,000,000). */
  rows: number;
  /** Packages that stay, looked up by the probe. */
  keptRows: number;
  batchSize: number;
  /** Pause between batches, ms (RETENTION_BATCH_PAUSE_MS; 0 = back to back). */
  pauseMs: number;
  /** Length of the baseline window, s. */
  baselineS: number;
  concurrency: number;
  keysPerLookup: number;
  redisUrl: string;
  seed: number;
  log: (m: string) => void;
}

export interface RelationSizes {
  tableBytes: number;
  indexBytes: Record<string, number>;
  queueBytes: number;
  /** Rows in packages (count(*)). */
  liveTuples: number;
  /** pg_stat_user_tables.n_dead_tup: what VACUUM has to clean. */
  deadTuples: number;
}

export interface RetentionResult {
  rows: number;
  keptRows: number;
  batchSize: number;
  /** The pause between batches the sweep ran with, ms. */
  pauseMs: number;
  baseline: { lookups: number; p50Ms: number; p99Ms: number };
  duringSweep: { lookups: number; p50Ms: number; p99Ms: number };
  /** during / baseline p99 (issue 16's target: ≤ 1.2). */
  p99Ratio: number;
  sweep: {
    deleted: number;
    batches: number;
    seconds: number;
    rowsPerS: number;
    maxBatchMs: number;
    /** Mean time of one batch (its transaction and Redis calls), pauses excluded. */
    meanBatchMs: number;
    /** Time spent pausing between batches, s. */
    pausedS: number;
  };
  vacuum: { seconds: number };
  sizes: { before: RelationSizes; afterSweep: RelationSizes; afterVacuum: RelationSizes };
}

const DAY_MS = 86_400_000;

async function sizes(c: Client): Promise<RelationSizes> {
  // Statistics reach pg_stat_user_tables asynchronously; this backend's own are flushed by the wait.
  await new Promise((r) => setTimeout(r, 1500));
  const { rows } = await c.query<{ relname: string; bytes: string }>(
    `SELECT c.relname, pg_relation_size(c.oid) AS bytes FROM pg_class c
      WHERE c.relname IN ('packages', 'analysis_queue')
         OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = 'packages'::regclass)`,
  );
  const stat = await c.query<{ live: string; dead: string }>(
    // Rows counted exactly (n_live_tup is an estimate); dead tuples from the statistics.
    `SELECT (SELECT count(*) FROM packages) AS live, n_dead_tup AS dead FROM pg_stat_user_tables WHERE relname = 'packages'`,
  );
  const indexBytes: Record<string, number> = {};
  let tableBytes = 0;
  let queueBytes = 0;
  for (const r of rows) {
    if (r.relname === 'packages') tableBytes = Number(r.bytes);
    else if (r.relname === 'analysis_queue') queueBytes = Number(r.bytes);
    else indexBytes[r.relname] = Number(r.bytes);
  }
  return {
    tableBytes,
    indexBytes,
    queueBytes,
    liveTuples: Number(stat.rows[0]?.live ?? 0),
    deadTuples: Number(stat.rows[0]?.dead ?? 0),
  };
}

function summary(ms: readonly number[]) {
  const [p50 = Number.NaN, p99 = Number.NaN] = percentiles(ms, [50, 99]);
  return { lookups: ms.length, p50Ms: round(p50, 2), p99Ms: round(p99, 2) };
}

export async function runRetentionBench(o: RetentionOptions): Promise<RetentionResult> {
  const now = Date.now();
  await withClient('postgres', async (c) => {
    await c.query(`DROP DATABASE IF EXISTS ${RETENTION_DATABASE} WITH (FORCE)`);
    await c.query(`CREATE DATABASE ${RETENTION_DATABASE}`);
  });
  await migrate(pgUrl(RETENTION_DATABASE));
  const catalogue = new Catalogue({
    seed: o.seed,
    knownApps: o.keptRows,
    knownExponent: 1,
    hotApps: 0,
    hotExponent: 1,
  });
  await withClient(RETENTION_DATABASE, async (c) => {
    await c.query('ALTER TABLE packages SET (autovacuum_enabled = off)');
    o.log(`retention: seeding ${o.rows} old packages (queued for analysis) and ${o.keptRows} kept ones`);
    // Old rows first, as a real table holds them; server-side, so a million take seconds.
    await c.query(
      `INSERT INTO packages (name, version_code, signature, first_seen_at, last_seen_at, reports)
       SELECT 'org.old.pkg' || i, i % 1000, encode(sha256(('old' || i)::bytea), 'hex'),
              $2::timestamptz + i * interval '1 millisecond', $2::timestamptz + i * interval '1 millisecond', 1
         FROM generate_series(1, $1::int) AS i`,
      [o.rows, new Date(now - 60 * DAY_MS).toISOString()],
    );
    await c.query('INSERT INTO analysis_queue (package_id) SELECT id FROM packages');
    const seenAt = new Date(now - DAY_MS).toISOString();
    function* kept(): Generator<string> {
      for (let i = 0; i < o.keptRows; i++) {
        const p = catalogue.known(i);
        yield `${p.name}\t${p.versionCode}\t${p.signature}\t${seenAt}\t${seenAt}\n`;
      }
    }
    await copyLines(
      c,
      'COPY packages (name, version_code, signature, first_seen_at, last_seen_at) FROM STDIN',
      kept(),
    );
    await c.query('VACUUM ANALYZE packages');
    await c.query('VACUUM ANALYZE analysis_queue');
  });
  // Read from a new session: a backend's statistics reach pg_stat_user_tables when it ends or idles.
  const before = await withClient(RETENTION_DATABASE, sizes);

  const probe = await LookupProbe.start({
    databaseUrl: pgUrl(RETENTION_DATABASE),
    catalogue: catalogue.options,
    concurrency: o.concurrency,
    keysPerLookup: o.keysPerLookup,
  });
  const redis = new Redis(o.redisUrl);
  const keys = new KeySchema(`bench_ret_${randomBytes(4).toString('hex')}`);
  const pool = new Pool({ connectionString: pgUrl(RETENTION_DATABASE), max: 2 });
  let poolEnded = false;
  try {
    // A second of warm-up (connections, plans, cache) is left out of the baseline.
    await new Promise((r) => setTimeout(r, 1000));
    const from = probe.mark();
    o.log(`retention: baseline lookups for ${o.baselineS} s`);
    await new Promise((r) => setTimeout(r, o.baselineS * 1000));
    const baselineEnd = probe.mark();

    const store = new RetentionStore(pool, { lockTimeoutMs: 100, statementTimeoutMs: 5000 });
    const threshold = new Date(now - 30 * DAY_MS);
    let cursor: RetentionCursor | null = null;
    let deleted = 0;
    let batches = 0;
    let maxBatchMs = 0;
    let batchMsTotal = 0;
    let pausedMs = 0;
    o.log(`retention: sweeping in batches of ${o.batchSize}, pausing ${o.pauseMs} ms between batches`);
    const sweepFrom = probe.mark();
    const started = performance.now();
    do {
      const t0 = performance.now();
      const b = await store.sweepBatch({
        threshold,
        after: cursor,
        limit: o.batchSize,
        held: (packageKeys) => heldInRedis(redis, keys, 16, packageKeys),
      });
      // The sweeper's after-commit work: the cache entries' UNLINK and the second hold check.
      if (b.deleted.length > 0) {
        await redis.unlink(...b.deleted.map((k) => keys.cache(k)));
        await heldInRedis(redis, keys, 16, b.deleted);
      }
      const batchMs = performance.now() - t0;
      maxBatchMs = Math.max(maxBatchMs, batchMs);
      batchMsTotal += batchMs;
      deleted += b.deleted.length;
      batches++;
      cursor = b.cursor;
      // The sweeper's pause: between two batches of the pass, none after the last.
      if (cursor && o.pauseMs > 0) {
        const p0 = performance.now();
        await new Promise((r) => setTimeout(r, o.pauseMs));
        pausedMs += performance.now() - p0;
      }
    } while (cursor);
    const seconds = (performance.now() - started) / 1000;
    // The probe reports every 200 ms: wait for the tick that covers the sweep's end.
    await new Promise((r) => setTimeout(r, 300));
    const sweepTo = probe.mark();
    await probe.stop();
    // Ended first, so that the sweep's dead tuples are in the statistics read next.
    await pool.end();
    poolEnded = true;

    const afterSweep = await withClient(RETENTION_DATABASE, sizes);
    const vacuumStarted = performance.now();
    await withClient(RETENTION_DATABASE, (c) => c.query('VACUUM packages'));
    await withClient(RETENTION_DATABASE, (c) => c.query('VACUUM analysis_queue'));
    const vacuumS = (performance.now() - vacuumStarted) / 1000;
    const afterVacuum = await withClient(RETENTION_DATABASE, sizes);

    const baseline = summary(probe.latencies(from, baselineEnd));
    const duringSweep = summary(probe.latencies(sweepFrom, sweepTo));
    return {
      rows: o.rows,
      keptRows: o.keptRows,
      batchSize: o.batchSize,
      pauseMs: o.pauseMs,
      baseline,
      duringSweep,
      p99Ratio: round(duringSweep.p99Ms / baseline.p99Ms, 2),
      sweep: {
        deleted,
        batches,
        seconds: round(seconds, 2),
        rowsPerS: Math.round(deleted / seconds),
        maxBatchMs: round(maxBatchMs, 1),
        meanBatchMs: round(batchMsTotal / Math.max(1, batches), 1),
        pausedS: round(pausedMs / 1000, 2),
      },
      vacuum: { seconds: round(vacuumS, 2) },
      sizes: { before, afterSweep, afterVacuum },
    };
  } finally {
    await probe.stop();
    if (!poolEnded) await pool.end();
    await deletePrefix(redis, keys.prefix);
    redis.disconnect();
  }
}
