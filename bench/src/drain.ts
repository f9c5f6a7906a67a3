import {
  configDefaults,
  KeySchema,
  PackageStore,
  packageKey,
  parsePackageKey,
  partitionOf,
  RedisBuffer,
  ReportBuffer,
  type NewPackage,
} from '@safepkg/core';
import { Redis } from 'ioredis';
import { Pool, type PoolClient } from 'pg';
import { BENCH_DATABASE, databaseStats, insertedSince, resetBenchDatabase } from './bench-database';
import { appEnv, type BenchEnv } from './bench-env';
import { Catalogue } from './catalogue';
import { bufferDepth, reportKeys } from './buffer-state';
import { sleep, startApp } from './processes';
import { Random } from './random';
import { deletePrefix } from './redis-prefix';
import { percentiles } from './stats';
import { join } from 'node:path';

export interface DrainResult {
  entries: number;
  /** Whether each entry was also counted as reported once, as the check that buffered it does. */
  withReports: boolean;
  fillMs: number;
  /** From the first observed drop in depth until the buffer was empty. */
  drainMs: number;
  rowsPerS: number;
  /** From the flusher's start (process launch included) until empty. */
  rowsPerSFromStart: number;
  depthOverTime: { tMs: number; depth: number }[];
  newRows: number;
  writeTransactions: number;
  xactCommit: number;
  /** Statements one 10k-row insertBatch sends (counted on the client), and per 10k flushed rows. */
  statementsPerBatch: number;
  statementsPer10kRows: number;
  /** insertBatch of 40,000 rows of which half are already stored, RETURNING the new half. */
  dedupe40kMs: { runs: number[]; median: number };
  /** One flush batch of `rows` in one partition, by protocol step (median of 3 reps, 1 when quick; in-process, core code). */
  batchPhasesMs: { rows: number; read: number; insert: number; confirm: number; rowsPerS: number };
}

function drainRefs(
  catalogue: Catalogue,
  stream: string,
  from: number,
  count: number,
  rng: Random,
): NewPackage[] {
  const firstSeenAt = new Date();
  return Array.from({ length: count }, (_, i) => ({
    ref: catalogue.tail(stream, from + i, rng),
    firstSeenAt,
  }));
}

/** A pool whose every query (COPY included) is counted: statements measured, not assumed. */
function countingPool(url: string): { pool: Pool; count: () => number } {
  let statements = 0;
  const pool = new Pool({ connectionString: url, max: 2 });
  pool.on('connect', (client: PoolClient) => {
    const target = client as unknown as { query: (...args: unknown[]) => unknown };
    const original = target.query.bind(client);
    target.query = (...args: unknown[]) => {
      statements++;
      return original(...args);
    };
  });
  return { pool, count: () => statements };
}

/**
 * Fills the buffer with `entries` never-seen packages straight through RedisBuffer.add
 * (big calls, a few in flight) and, `withReports`, counts each once as the check that buffered
 * it does. The prefix is emptied first.
 */
export async function fillBuffer(
  env: BenchEnv,
  redis: Redis,
  catalogue: Catalogue,
  entries: number,
  withReports: boolean,
  rng: Random,
): Promise<{ fillMs: number; buffer: RedisBuffer }> {
  const keys = new KeySchema(env.keyPrefix);
  await deletePrefix(redis, env.keyPrefix);
  const partitions = configDefaults().bufferPartitions;
  const buffer = new RedisBuffer(redis, keys, partitions, Number.MAX_SAFE_INTEGER);
  const reports = new ReportBuffer(redis, keys, partitions);
  const t0 = Date.now();
  const chunk = 20_000;
  let next = 0;
  const filler = async () => {
    while (next < entries) {
      const from = next;
      const n = Math.min(chunk, entries - from);
      next += n;
      const t = Date.now();
      const fill = drainRefs(catalogue, 'drain', from, n, rng).map((r) => packageKey(r.ref));
      await buffer.add(fill.map((key) => ({ key, payload: { t } })));
      if (withReports) await reports.add(fill, t);
    }
  };
  await Promise.all([filler(), filler(), filler()]);
  const fillMs = Date.now() - t0;
  const filled = await bufferDepth(redis, keys);
  if (filled !== entries) throw new Error(`buffer holds ${filled} entries, expected ${entries}`);
  return { fillMs, buffer };
}

export interface FlushedBuffer {
  /** Date.now() when the flusher was launched, when the depth first dropped, when all was empty. */
  startedAt: number;
  firstDropAt: number;
  emptyAt: number;
  depthOverTime: { tMs: number; depth: number }[];
}

/**
 * Starts one flusher on `cores` and samples the depth every 200 ms until the buffer (and
 * the report deltas) are empty; the flusher is stopped before returning.
 */
export async function flushUntilEmpty(
  env: BenchEnv,
  redis: Redis,
  databaseUrl: string,
  entries: number,
  cores: number[] | null,
  nodeArgs: string[] = [],
): Promise<FlushedBuffer> {
  const keys = new KeySchema(env.keyPrefix);
  const partitions = configDefaults().bufferPartitions;
  const started = Date.now();
  const flusher = await startApp('flusher', appEnv(env, databaseUrl), nodeArgs, cores);
  const depthOverTime: { tMs: number; depth: number }[] = [];
  let firstDrop: number | null = null;
  let now: number;
  try {
    for (;;) {
      const depth = await bufferDepth(redis, keys);
      now = Date.now();
      depthOverTime.push({ tMs: now - started, depth });
      if (firstDrop === null && depth < entries) firstDrop = now;
      if (depth === 0 && (await reportKeys(redis, keys, partitions)) === 0) break;
      if (now - started > 900_000) throw new Error('buffer not drained in 15 minutes');
      await sleep(200);
    }
  } finally {
    await flusher.stop();
  }
  return { startedAt: started, firstDropAt: firstDrop ?? started, emptyAt: now, depthOverTime };
}

/**
 * Fills the buffer (fillBuffer), then starts one flusher and samples the depth until the
 * buffer is empty (flushUntilEmpty); then the flush statements and batch steps, measured.
 */
export async function runDrain(env: BenchEnv, entries: number, withReports = true): Promise<DrainResult> {
  const redis = new Redis(env.redisUrl);
  const catalogue = new Catalogue({ ...env.catalogue, knownApps: 1, hotApps: 1 });
  try {
    const databaseUrl = await resetBenchDatabase(env.template);
    const rng = new Random(env.seed + 17);
    const { fillMs, buffer } = await fillBuffer(env, redis, catalogue, entries, withReports, rng);
    env.log(`drain: ${entries} entries buffered in ${fillMs} ms; starting the flusher`);

    const before = await databaseStats();
    const nodeArgs = env.profileDir
      ? ['--cpu-prof', `--cpu-prof-dir=${join(env.profileDir, 'drain', 'flusher')}`]
      : [];
    // The drain runs alone: the flusher takes the api's cores, off PostgreSQL's.
    const flushed = await flushUntilEmpty(env, redis, databaseUrl, entries, env.topology.api, nodeArgs);
    const { depthOverTime } = flushed;
    const emptyAt = flushed.emptyAt - flushed.startedAt;
    const drainMs = flushed.emptyAt - flushed.firstDropAt;
    await sleep(700);
    const after = await databaseStats();
    const inserted = await insertedSince(env.seedRows, BENCH_DATABASE);

    // Statement count and the 40k dedupe insert, measured on the client with the core store.
    const counting = countingPool(databaseUrl);
    const store = new PackageStore(counting.pool);
    const batch = drainRefs(catalogue, 'stmt', 0, configDefaults().flushBatchSize, rng);
    const c0 = counting.count();
    await store.insertBatch(batch);
    const statementsPerBatch = counting.count() - c0;
    const runs: number[] = [];
    const reps = env.quick ? 1 : 3;
    for (let r = 0; r < reps; r++) {
      // 20,000 of the drained packages (already stored) and 20,000 new ones, interleaved.
      const { rows: stored } = await counting.pool.query<{
        name: string;
        version_code: string;
        signature: string;
      }>(
        'SELECT name, version_code, signature FROM packages WHERE id > $1 ORDER BY id OFFSET $2 LIMIT 20000',
        [env.seedRows, r * 20_000],
      );
      const present: NewPackage[] = stored.map((s) => ({
        ref: { name: s.name, versionCode: Number(s.version_code), signature: s.signature },
        firstSeenAt: new Date(),
      }));
      const fresh = drainRefs(catalogue, `dd${r}`, 0, 20_000, rng);
      const rows = present.flatMap((p, i) => [p, fresh[i] as NewPackage]);
      const t = process.hrtime.bigint();
      const returned = await store.insertBatch(rows);
      runs.push(Number(process.hrtime.bigint() - t) / 1e6);
      if (returned.length !== 20_000)
        throw new Error(`dedupe insert returned ${returned.length}, expected 20000`);
    }
    const batchPhasesMs = await measureBatchPhases(buffer, store, catalogue, rng, reps);
    await counting.pool.end();
    const batches = inserted.writeTransactions;
    return {
      entries,
      withReports,
      fillMs,
      drainMs,
      rowsPerS: (entries * 1000) / Math.max(1, drainMs),
      rowsPerSFromStart: (entries * 1000) / Math.max(1, emptyAt),
      depthOverTime,
      newRows: inserted.rows,
      writeTransactions: batches,
      xactCommit: after.xactCommit - before.xactCommit,
      statementsPerBatch,
      statementsPer10kRows: (statementsPerBatch * batches * 10_000) / Math.max(1, inserted.rows),
      dedupe40kMs: { runs, median: percentiles(runs, [50])[0] as number },
      batchPhasesMs,
    };
  } finally {
    await deletePrefix(redis, env.keyPrefix).catch(() => undefined);
    redis.disconnect();
  }
}

/**
 * Times the three steps of one full flush batch in one partition with the core code the
 * flusher runs (buffer-read.lua, insertBatch, buffer-confirm.lua), to show where a
 * batch's time goes; nothing else touches partition 0 meanwhile.
 */
async function measureBatchPhases(
  buffer: RedisBuffer,
  store: PackageStore,
  catalogue: Catalogue,
  rng: Random,
  reps: number,
) {
  const rows = configDefaults().flushBatchSize;
  const read: number[] = [];
  const insert: number[] = [];
  const confirm: number[] = [];
  const ms = (t: bigint) => Number(process.hrtime.bigint() - t) / 1e6;
  for (let r = 0; r < reps; r++) {
    const keys: string[] = [];
    for (let n = 0; keys.length < rows; n++) {
      const key = packageKey(catalogue.tail(`phase${r}`, n, rng));
      if (partitionOf(key, buffer.partitions) === 0) keys.push(key);
    }
    await buffer.add(keys.map((key) => ({ key, payload: { t: Date.now() } })));
    const snapshot = await buffer.snapshotSeq(0);
    let t = process.hrtime.bigint();
    const batch = await buffer.read(0, null, snapshot, rows);
    read.push(ms(t));
    t = process.hrtime.bigint();
    await store.insertBatch(
      batch.map((e) => ({ ref: parsePackageKey(e.key), firstSeenAt: new Date(e.payload.t) })),
    );
    insert.push(ms(t));
    t = process.hrtime.bigint();
    await buffer.confirm(0, batch);
    confirm.push(ms(t));
  }
  const med = (xs: number[]) => percentiles(xs, [50])[0] as number;
  const total = med(read) + med(insert) + med(confirm);
  return {
    rows,
    read: med(read),
    insert: med(insert),
    confirm: med(confirm),
    rowsPerS: (rows * 1000) / total,
  };
}
