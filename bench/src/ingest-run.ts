import { join } from 'node:path';
import { loadavg } from 'node:os';
import { configDefaults, KeySchema } from '@safepkg/core';
import { Redis } from 'ioredis';
import { Client } from 'pg';
import { BENCH_DATABASE, databaseStats, insertedSince, resetBenchDatabase } from './bench-database';
import { appEnv, type BenchEnv } from './bench-env';
import { Catalogue } from './catalogue';
import { DeviceSimulator, type PackageShares } from './devices';
import { runLoad, type LoadResult } from './load';
import { LookupProbe } from './lookup-probe';
import { sleep, startApp, type AppProcess } from './processes';
import { deletePrefix } from './redis-prefix';

export type ScenarioName = 'steady' | 'storm';
export type WriteMode = 'buffered' | 'direct';

export const SCENARIO_SHARES: Record<ScenarioName, PackageShares> = {
  // 95 % known; the unknown 5 % mostly long tail, a little of a slow release wave.
  steady: { known: 0.95, hot: 0.01, tail: 0.04 },
  // Half unknown: a wave of new releases every device reports (hot keys) plus a long tail.
  storm: { known: 0.5, hot: 0.1, tail: 0.4 },
};

export interface IngestSpec {
  scenario: ScenarioName;
  writeMode: WriteMode;
  durationS: number;
  connections: number;
  /** Fixed offered load in requests/s; undefined = closed loop. */
  rate?: number;
  /**
   * A PostgreSQL write stall during the load: a session holds `LOCK TABLE packages IN SHARE
   * MODE` (reads go on, every INSERT waits), as a long maintenance statement would.
   */
  writeStall?: { atS: number; forMs: number };
}

export interface IngestResult {
  name: string;
  spec: IngestSpec;
  load: LoadResult;
  /** Side-process lookups (100 keys each) per second during the load. */
  lookupsPerS: number;
  postgres: {
    newPackages: number;
    queuedForAnalysis: number;
    /** Distinct inserting transactions of the new rows (xmin). */
    writeTransactions: number;
    writeTransactionsPer10k: number;
    /** pg_stat_database deltas over the whole run, reads included. */
    xactCommit: number;
    xactRollback: number;
    tupInserted: number;
  };
  /** Buffered: time from the end of the load until the buffer was empty. */
  drainAfterLoadMs: number | null;
  loadavg: number[];
}

/** Entries pending over the configured partitions (the apps run with the default count). */
export async function bufferDepth(
  redis: Redis,
  keys: KeySchema,
  partitions = configDefaults().bufferPartitions,
): Promise<number> {
  const pipeline = redis.pipeline();
  for (let p = 0; p < partitions; p++) pipeline.zcard(keys.partition(p).pending);
  const replies = (await pipeline.exec()) ?? [];
  return replies.reduce((a, [, n]) => a + Number(n), 0);
}

export function runName(spec: IngestSpec): string {
  return `${spec.scenario}/${spec.writeMode}/${spec.rate ? `rate${spec.rate}` : 'max'}${spec.writeStall ? '/stall' : ''}`;
}

/** Starts the apps of a write mode (N api processes, plus the flusher when buffered). */
export async function startStack(
  env: BenchEnv,
  databaseUrl: string,
  writeMode: WriteMode,
  profileTag: string,
) {
  const nodeArgs = (app: string) =>
    env.profileDir
      ? ['--cpu-prof', `--cpu-prof-dir=${join(env.profileDir, profileTag.replace(/\W+/g, '-'), app)}`]
      : [];
  const base = appEnv(env, databaseUrl, { WRITE_MODE: writeMode });
  const [flusher, ...apis] = await Promise.all([
    writeMode === 'buffered' ? startApp('flusher', base, nodeArgs('flusher')) : null,
    ...Array.from({ length: env.apiProcesses }, () => startApp('api', base, nodeArgs('api'))),
  ]);
  return {
    apis: apis as AppProcess[],
    flusher,
    all: [...apis, ...(flusher ? [flusher] : [])] as AppProcess[],
    stop: async () => {
      await Promise.all([...apis, ...(flusher ? [flusher] : [])].map((a) => a.stop()));
    },
  };
}

/**
 * One scenario against one write mode, from a fresh copy of the seeded database and an
 * empty key prefix: load, then (buffered) wait for the buffer to drain, then count what
 * reached PostgreSQL and how many write transactions it took.
 */
export async function runIngest(env: BenchEnv, spec: IngestSpec): Promise<IngestResult> {
  const name = runName(spec);
  const redis = new Redis(env.redisUrl);
  const keys = new KeySchema(env.keyPrefix);
  try {
    await deletePrefix(redis, env.keyPrefix);
    const databaseUrl = await resetBenchDatabase(env.template);
    const stack = await startStack(env, databaseUrl, spec.writeMode, name);
    const probe = await LookupProbe.start({
      databaseUrl,
      catalogue: env.catalogue,
      concurrency: 2,
      keysPerLookup: 100,
    });
    let load: LoadResult;
    let lookupsPerS: number;
    let drainAfterLoadMs: number | null = null;
    const before = await databaseStats();
    try {
      const simulator = new DeviceSimulator(new Catalogue(env.catalogue), {
        seed: env.seed + (spec.scenario === 'storm' ? 1 : 0),
        stream: spec.scenario,
        packagesPerDevice: env.packagesPerDevice,
        shares: SCENARIO_SHARES[spec.scenario],
      });
      const from = probe.mark();
      const stall = spec.writeStall
        ? holdWriteLock(databaseUrl, spec.writeStall.atS * 1000, spec.writeStall.forMs)
        : null;
      load = await runLoad({
        urls: stack.apis.map((a) => a.url),
        durationS: spec.durationS,
        connections: spec.connections,
        overallRate: spec.rate,
        simulator,
      });
      await stall;
      await sleep(250);
      lookupsPerS = LookupProbe.rate(from, probe.mark());
      if (stack.flusher) {
        const ended = Date.now();
        for (;;) {
          if ((await bufferDepth(redis, keys)) === 0) break;
          if (Date.now() - ended > 180_000)
            throw new Error(`${name}: buffer not drained 180 s after the load`);
          await sleep(100);
        }
        drainAfterLoadMs = Date.now() - ended;
      }
    } finally {
      await probe.stop();
      await stack.stop();
    }
    // Backends report their statistics when they exit; give the last ones a moment.
    await sleep(700);
    const after = await databaseStats();
    const inserted = await insertedSince(env.seedRows, BENCH_DATABASE);
    const result: IngestResult = {
      name,
      spec,
      load,
      lookupsPerS,
      postgres: {
        newPackages: inserted.rows,
        queuedForAnalysis: inserted.queued,
        writeTransactions: inserted.writeTransactions,
        writeTransactionsPer10k:
          inserted.rows > 0 ? (inserted.writeTransactions * 10_000) / inserted.rows : 0,
        xactCommit: after.xactCommit - before.xactCommit,
        xactRollback: after.xactRollback - before.xactRollback,
        tupInserted: after.tupInserted - before.tupInserted,
      },
      drainAfterLoadMs,
      loadavg: loadavg(),
    };
    return result;
  } finally {
    redis.disconnect();
  }
}

/** Lookup capacity with nothing else running on the benchmark database. */
export async function runBaselineLookups(env: BenchEnv, durationS: number): Promise<number> {
  const databaseUrl = await resetBenchDatabase(env.template);
  const probe = await LookupProbe.start({
    databaseUrl,
    catalogue: env.catalogue,
    concurrency: 2,
    keysPerLookup: 100,
  });
  try {
    await sleep(500);
    const from = probe.mark();
    await sleep(durationS * 1000);
    return LookupProbe.rate(from, probe.mark());
  } finally {
    await probe.stop();
  }
}

/** After `afterMs`, blocks every write to `packages` (not reads) for `forMs`. */
async function holdWriteLock(databaseUrl: string, afterMs: number, forMs: number): Promise<void> {
  const c = new Client({ connectionString: databaseUrl });
  await c.connect();
  try {
    await sleep(afterMs);
    await c.query('BEGIN');
    await c.query('LOCK TABLE packages IN SHARE MODE');
    await sleep(forMs);
    await c.query('COMMIT');
  } finally {
    await c.end();
  }
}
