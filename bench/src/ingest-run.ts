import { join } from 'node:path';
import { loadavg } from 'node:os';
import { configDefaults, KeySchema } from '@safepkg/core';
import { Redis } from 'ioredis';
import { Client } from 'pg';
import { serverTreeCpuMs, totalCpuMs } from './cpu-time';
import { bufferDepth, reportKeys } from './buffer-state';
import { BENCH_DATABASE, databaseStats, insertedSince, resetBenchDatabase } from './bench-database';
import { appEnv, type BenchEnv } from './bench-env';
import { Catalogue } from './catalogue';
import { DeviceSimulator, type PackageShares } from './devices';
import { runLoad, type LoadResult } from './load';
import { LookupProbe } from './lookup-probe';
import { sleep, startApp, type AppProcess } from './processes';
import { deletePrefix } from './redis-prefix';

export type ScenarioName = 'hit' | 'steady' | 'new' | 'storm';
export type WriteMode = 'buffered' | 'direct';

export const SCENARIO_SHARES: Record<ScenarioName, PackageShares> = {
  // Only known apps, with every one of them in the cache before the load: the cache-hit path.
  hit: { known: 1, hot: 0, tail: 0 },
  // 95 % known; the unknown 5 % mostly long tail, a little of a slow release wave.
  steady: { known: 0.95, hot: 0.01, tail: 0.04 },
  // Every package never seen before: the all-new storm, buffering (or inserting) everything.
  new: { known: 0, hot: 0, tail: 1 },
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
  /** From the api processes' own counters over the load (the hit run's cache warm-up left out). */
  checkPath: {
    /** Packages the check path looked up in PostgreSQL, per check request. */
    postgresLookupsPerRequest: number;
    /** Packages answered pending from the buffer per check request. */
    pendingAnswersPerRequest: number;
  };
  /** CPU time of the api processes during the load (/proc/<pid>/stat), per checked package. */
  apiCpu: CpuPerPackage;
  /** The flusher's CPU over the same window (buffered only). */
  flusherCpuMs: number | null;
  /**
   * The private PostgreSQL's CPU (every process of its tree) from the load's start until the
   * buffer was drained (buffered) or the load ended (direct), and the probe's lookups over
   * that window; null on the shared server, whose other work cannot be told apart.
   */
  postgresCpu: { ms: number; probeLookups: number } | null;
  /** When PostgreSQL writes were actually blocked, in seconds since the load started. */
  writeStallWindowS: { from: number; to: number } | null;
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

export interface CpuPerPackage {
  /** user + system CPU ms of all the processes over the load window. */
  cpuMs: number;
  /** Packages answered with a 2xx in that window. */
  packages: number;
  usPerPackage: number;
  /** CPU ms per wall ms, summed over the processes (2 = two cores busy). */
  coresBusy: number;
}

export function cpuPerPackage(cpuMs: number, load: LoadResult, packagesPerDevice: number): CpuPerPackage {
  const packages = load.ok * packagesPerDevice;
  return {
    cpuMs,
    packages,
    usPerPackage: packages > 0 ? (cpuMs * 1000) / packages : Number.NaN,
    coresBusy: cpuMs / (load.durationS * 1000),
  };
}

interface CheckPathSums {
  checks: number;
  lookups: number;
  pending: number;
}

/** Sums the check path's counters over the api processes' /metrics (Prometheus text). */
async function checkPathSums(apis: readonly AppProcess[]): Promise<CheckPathSums> {
  const sums = { checks: 0, lookups: 0, pending: 0 };
  for (const api of apis) {
    const text = await (await fetch(`${api.url}/metrics`)).text();
    for (const line of text.split('\n')) {
      const m =
        /^(safepkg_checks_total|safepkg_check_postgres_lookups_total|safepkg_pending_answers_total)(\{[^}]*\})? (\S+)$/.exec(
          line,
        );
      if (!m) continue;
      const v = Number(m[3]);
      if (m[1] === 'safepkg_checks_total') sums.checks += v;
      else if (m[1] === 'safepkg_check_postgres_lookups_total') sums.lookups += v;
      else sums.pending += v;
    }
  }
  return sums;
}

/** Per check request between two readings (the cache warm-up's checks before `from` left out). */
function perCheck(from: CheckPathSums, to: CheckPathSums): IngestResult['checkPath'] {
  const checks = to.checks - from.checks;
  const per = (n: number) => (checks > 0 ? n / checks : 0);
  return {
    postgresLookupsPerRequest: per(to.lookups - from.lookups),
    pendingAnswersPerRequest: per(to.pending - from.pending),
  };
}

/** Until the flusher has taken every pending entry and every report count out of Redis. */
async function untilFlushed(redis: Redis, keys: KeySchema, name: string): Promise<void> {
  const partitions = configDefaults().bufferPartitions;
  const started = Date.now();
  for (;;) {
    if (
      (await bufferDepth(redis, keys, partitions)) === 0 &&
      (await reportKeys(redis, keys, partitions)) === 0
    )
      return;
    if (Date.now() - started > 180_000) throw new Error(`${name}: buffer not drained 180 s after the load`);
    await sleep(100);
  }
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
    writeMode === 'buffered' ? startApp('flusher', base, nodeArgs('flusher'), env.topology.flusher) : null,
    ...Array.from({ length: env.apiProcesses }, () =>
      startApp('api', base, nodeArgs('api'), env.topology.api),
    ),
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
    let checkPath: IngestResult['checkPath'];
    let apiCpuMs: number;
    let flusherCpuMs: number | null = null;
    let writeStallWindowS: IngestResult['writeStallWindowS'] = null;
    let drainAfterLoadMs: number | null = null;
    let postgresCpu: IngestResult['postgresCpu'] = null;
    const before = await databaseStats();
    try {
      const simulator = new DeviceSimulator(new Catalogue(env.catalogue), {
        seed: env.seed + (spec.scenario === 'storm' ? 1 : 0),
        stream: spec.scenario,
        packagesPerDevice: env.packagesPerDevice,
        shares: SCENARIO_SHARES[spec.scenario],
      });
      if (spec.scenario === 'hit') {
        await warmCache(stack.apis[0] as AppProcess, new Catalogue(env.catalogue));
        // The warm-up's report counts are flushed before the window opens, not inside it.
        if (stack.flusher) await untilFlushed(redis, keys, name);
      }
      const countersBefore = await checkPathSums(stack.apis);
      const from = probe.mark();
      const loadStart = Date.now();
      const stall = spec.writeStall
        ? holdWriteLock(databaseUrl, spec.writeStall.atS * 1000, spec.writeStall.forMs)
        : null;
      const apiPids = stack.apis.map((a) => a.child.pid as number);
      const cpuBefore = totalCpuMs(apiPids);
      const pgCpu = () => (env.postgresPid === null ? null : serverTreeCpuMs(env.postgresPid));
      const pgBefore = pgCpu();
      const probeBefore = probe.mark();
      const flusherBefore = stack.flusher ? totalCpuMs([stack.flusher.child.pid as number]) : 0;
      load = await runLoad({
        urls: stack.apis.map((a) => a.url),
        durationS: spec.durationS,
        connections: spec.connections,
        overallRate: spec.rate,
        simulator,
      });
      apiCpuMs = totalCpuMs(apiPids) - cpuBefore;
      if (stack.flusher) flusherCpuMs = totalCpuMs([stack.flusher.child.pid as number]) - flusherBefore;
      const held = await stall;
      if (held)
        writeStallWindowS = { from: (held.from - loadStart) / 1000, to: (held.to - loadStart) / 1000 };
      await sleep(250);
      lookupsPerS = LookupProbe.rate(from, probe.mark());
      checkPath = perCheck(countersBefore, await checkPathSums(stack.apis));
      if (stack.flusher) {
        const ended = Date.now();
        await untilFlushed(redis, keys, name);
        drainAfterLoadMs = Date.now() - ended;
      }
      // Through the drain: the flush of what the load buffered is PostgreSQL work of the load.
      const pgAfter = pgCpu();
      postgresCpu =
        pgBefore === null || pgAfter === null
          ? null
          : { ms: pgAfter - pgBefore, probeLookups: probe.mark().lookups - probeBefore.lookups };
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
      checkPath,
      apiCpu: cpuPerPackage(apiCpuMs, load, env.packagesPerDevice),
      flusherCpuMs,
      postgresCpu,
      writeStallWindowS,
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

/**
 * Lookup capacity with nothing else running on the benchmark database, and (private server)
 * the PostgreSQL CPU one probe lookup costs: what a run's probe took of PostgreSQL's CPU is
 * taken out of the run's with it.
 */
export async function runBaselineLookups(
  env: BenchEnv,
  durationS: number,
): Promise<{ lookupsPerS: number; postgresCpuMsPerLookup: number | null }> {
  const databaseUrl = await resetBenchDatabase(env.template);
  const probe = await LookupProbe.start({
    databaseUrl,
    catalogue: env.catalogue,
    concurrency: 2,
    keysPerLookup: 100,
  });
  const pgCpu = () => (env.postgresPid === null ? 0 : serverTreeCpuMs(env.postgresPid));
  try {
    await sleep(500);
    const from = probe.mark();
    const cpuFrom = pgCpu();
    await sleep(durationS * 1000);
    const to = probe.mark();
    const cpuMs = pgCpu() - cpuFrom;
    const lookups = to.lookups - from.lookups;
    return {
      lookupsPerS: LookupProbe.rate(from, to),
      postgresCpuMsPerLookup: env.postgresPid === null || lookups === 0 ? null : cpuMs / lookups,
    };
  } finally {
    await probe.stop();
  }
}

/**
 * After `afterMs`, blocks every write to `packages` (not reads) for `forMs`; returns when
 * the lock was held (Date.now()), for the charts.
 */
async function holdWriteLock(
  databaseUrl: string,
  afterMs: number,
  forMs: number,
): Promise<{ from: number; to: number }> {
  const c = new Client({ connectionString: databaseUrl });
  await c.connect();
  try {
    await sleep(afterMs);
    await c.query('BEGIN');
    await c.query('LOCK TABLE packages IN SHARE MODE');
    const from = Date.now();
    await sleep(forMs);
    await c.query('COMMIT');
    return { from, to: Date.now() };
  } finally {
    await c.end();
  }
}

/**
 * Puts every known app in the cache through the api (a check of each finds it in PostgreSQL
 * and fills the cache), so the `hit` scenario measures the cache-hit path alone.
 */
export async function warmCache(api: AppProcess, catalogue: Catalogue): Promise<void> {
  const n = catalogue.options.knownApps;
  const per = 1000;
  for (let i = 0; i < n; i += per) {
    const packages = Array.from({ length: Math.min(per, n - i) }, (_, j) => catalogue.known(i + j));
    const res = await fetch(`${api.url}/v1/packages/check`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ packages }),
    });
    if (!res.ok) throw new Error(`cache warm-up: ${res.status} ${await res.text()}`);
  }
}

export interface FloorResult {
  /** The api run whose load it repeated (runName). */
  like: string;
  /**
   * `same-rate`: at the request rate that api run achieved (its offered rate, when fixed), so
   * CPU per package compares at equal load: per-request and idle-wakeup costs do not shrink
   * with load, so a lightly loaded server spends more per package (measured here: 3.7 µs at
   * 177k pkg/s, 12 µs at 4.9k pkg/s). `max`: closed loop, the floor's throughput.
   */
  kind: 'same-rate' | 'max';
  /** The api run's spec, and this floor run's (the rate it was driven at). */
  likeSpec: IngestSpec;
  spec: IngestSpec;
  load: LoadResult;
  cpu: CpuPerPackage;
}

/**
 * The floor server (floor-server.ts) under the load of an api run just finished: as many
 * processes, on the same cores, the same device stream from its start, against the cache
 * that run left. The api's CPU per package ÷ this is what the check path costs above the stack.
 */
export async function runFloor(
  env: BenchEnv,
  like: IngestResult,
  kind: FloorResult['kind'],
  durationS: number,
): Promise<FloorResult> {
  const spec: IngestSpec = {
    ...like.spec,
    durationS,
    rate: kind === 'max' ? undefined : (like.spec.rate ?? Math.max(1, Math.round(like.load.requestsPerS))),
  };
  const base = appEnv(env, '', {});
  const floors = await Promise.all(
    Array.from({ length: env.apiProcesses }, () => startApp('floor', base, [], env.topology.api)),
  );
  try {
    const simulator = new DeviceSimulator(new Catalogue(env.catalogue), {
      seed: env.seed + (spec.scenario === 'storm' ? 1 : 0),
      stream: spec.scenario,
      packagesPerDevice: env.packagesPerDevice,
      shares: SCENARIO_SHARES[spec.scenario],
    });
    const pids = floors.map((f) => f.child.pid as number);
    const before = totalCpuMs(pids);
    const load = await runLoad({
      urls: floors.map((f) => f.url),
      durationS,
      connections: spec.connections,
      overallRate: spec.rate,
      simulator,
    });
    const cpu = cpuPerPackage(totalCpuMs(pids) - before, load, env.packagesPerDevice);
    return { like: like.name, kind, likeSpec: like.spec, spec, load, cpu };
  } finally {
    await Promise.all(floors.map((f) => f.stop()));
  }
}
