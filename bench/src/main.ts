import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { configDefaults } from '@safepkg/core';
import { Redis } from 'ioredis';
import { BENCH_DATABASE, ensureBenchTemplate, useBenchServer, withClient } from './bench-database';
import { RESULTS_DIR, type BenchEnv } from './bench-env';
import { benchCatalogue, Catalogue } from './catalogue';
import type { TopLevelSpec } from 'vega-lite';
import { chartPath, drainLine, groupedBars, p99OverTime, renderSvg, type BarDatum } from './charts';
import { runDrain } from './drain';
import { runFreshness } from './freshness';
import {
  runBaselineLookups,
  runFloor,
  runIngest,
  type IngestResult,
  type IngestSpec,
  type ScenarioName,
} from './ingest-run';
import { findProfiles, summariseProfile } from './profile-summary';
import { checkTargets, markdown, postgresUsPerPackage, type BenchResults } from './report';
import { runReplicaBench } from './replica-bench';
import { runRetentionBench } from './retention-bench';
import { runSchemaBench } from './schema-bench';
import { deletePrefix } from './redis-prefix';
import { startTopologyServers, type PrivatePostgres, type PrivateServer } from './private-servers';
import { describeTopology, planTopology, type Layout } from './topology';

const PARTS = ['ingest', 'drain', 'freshness', 'schema', 'retention', 'replicas'] as const;
type Part = (typeof PARTS)[number];
/** The ingest part's runs, in the order they run; `--runs=` picks some. */
const RUNS = ['hit', 'steady', 'steady-fixed', 'new', 'storm', 'storm-fixed', 'stall'] as const;
type RunGroup = (typeof RUNS)[number];
const QUICK_RUNS: RunGroup[] = ['hit', 'steady', 'storm-fixed'];

const USAGE = `usage: node dist/main.js [--quick] [--only=ingest,drain,freshness,schema,retention,replicas] [--profile]
  [--topology=split|postgres-alone|shared] [--runs=${RUNS.join(',')}] [--api-processes=N] [--duration=S] [--storm-rate=REQ_PER_S] [--steady-rate=REQ_PER_S]
  [--drain-entries=N] [--without-reports] [--without-pending-answers] [--schema-packages=N] [--retention-rows=N] [--retention-kept=N] [--retention-pause-ms=N] [--retention-batch-size=N]
  [--replica-probe-seconds=S] [--replica-drain-entries=N] [--replica-lag-sample-ms=MS] [--seed=N]`;

function parseCli() {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      profile: { type: 'boolean', default: false },
      topology: { type: 'string' },
      runs: { type: 'string' },
      'api-processes': { type: 'string' },
      duration: { type: 'string' },
      'storm-rate': { type: 'string' },
      'steady-rate': { type: 'string' },
      'drain-entries': { type: 'string' },
      'without-reports': { type: 'boolean', default: false },
      'without-pending-answers': { type: 'boolean', default: false },
      'schema-packages': { type: 'string' },
      'retention-rows': { type: 'string' },
      'retention-kept': { type: 'string' },
      'retention-pause-ms': { type: 'string' },
      'retention-batch-size': { type: 'string' },
      'replica-probe-seconds': { type: 'string' },
      'replica-drain-entries': { type: 'string' },
      'replica-lag-sample-ms': { type: 'string' },
      seed: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const quick = values.quick === true;
  const layout = (values.topology ?? (cpus().length >= 2 ? 'split' : 'shared')) as Layout;
  if (layout !== 'split' && layout !== 'postgres-alone' && layout !== 'shared')
    throw new Error(`unknown topology "${layout}"\n${USAGE}`);
  const topology = planTopology(layout);
  // The replicas part places the replica on the api's cores with nothing else there: split only.
  const only = values.only
    ? (values.only.split(',') as Part[])
    : quick
      ? (['ingest', 'drain', 'freshness'] as Part[])
      : PARTS.filter((p) => p !== 'replicas' || topology.layout === 'split');
  for (const p of only) if (!PARTS.includes(p)) throw new Error(`unknown part "${p}"\n${USAGE}`);
  if (only.includes('replicas') && topology.layout !== 'split')
    throw new Error(`the replicas part needs --topology=split (asked: ${topology.layout})\n${USAGE}`);
  const runs = values.runs ? (values.runs.split(',') as RunGroup[]) : quick ? QUICK_RUNS : [...RUNS];
  for (const r of runs) if (!RUNS.includes(r)) throw new Error(`unknown run "${r}"\n${USAGE}`);
  const num = (v: string | undefined, d: number) => (v === undefined ? d : Number(v));
  return {
    topology,
    runs: new Set(runs),
    quick,
    only: new Set(only),
    profile: values.profile === true,
    // One per api core in the split layout; two on the shared one, as before.
    apiProcesses: num(values['api-processes'], topology.api ? topology.api.length : 2),
    durationS: num(values.duration, quick ? 3 : 15),
    stormRate: values['storm-rate'] ? Number(values['storm-rate']) : null,
    steadyRate: num(values['steady-rate'], 1000),
    drainEntries: num(values['drain-entries'], quick ? 50_000 : 1_000_000),
    countReports: values['without-reports'] !== true,
    pendingAnswers: values['without-pending-answers'] !== true,
    schemaPackages: num(values['schema-packages'], 1_000_000),
    retentionRows: num(values['retention-rows'], quick ? 20_000 : 1_000_000),
    retentionKept: num(values['retention-kept'], quick ? 20_000 : 200_000),
    // The flusher's defaults unless told otherwise, so the bench measures what a deployment runs.
    retentionPauseMs: num(values['retention-pause-ms'], configDefaults().retentionBatchPauseMs),
    retentionBatchSize: num(values['retention-batch-size'], configDefaults().retentionBatchSize),
    // Defaults sized for the whole part to take under 3 minutes on the 2-core box.
    replicaProbeS: num(values['replica-probe-seconds'], quick ? 3 : 10),
    replicaDrainEntries: num(values['replica-drain-entries'], quick ? 20_000 : 200_000),
    replicaLagSampleMs: num(values['replica-lag-sample-ms'], 100),
    seed: num(values.seed, 20260101),
  };
}

/** The parts that run on the benchmark's stack (its PostgreSQL, Redis and catalogue template). */
function needsStack(cli: ReturnType<typeof parseCli>): boolean {
  return ['ingest', 'drain', 'freshness', 'replicas'].some((p) => cli.only.has(p as Part));
}

function stamp(d: Date): string {
  return d
    .toISOString()
    .replace(/[:.]/g, '-')
    .replace(/-\d{3}Z$/, 'Z');
}

async function machine(redisUrl: string) {
  const postgres = await withClient(
    'postgres',
    async (c) => (await c.query<{ v: string }>('SELECT version() AS v')).rows[0]?.v.split(' on ')[0] ?? '?',
  );
  const r = new Redis(redisUrl);
  const info = await r.info('server');
  r.disconnect();
  return {
    cpuModel: cpus()[0]?.model ?? '?',
    cpus: cpus().length,
    totalMemMb: Math.round(totalmem() / 2 ** 20),
    node: process.version,
    postgres,
    redis: /redis_version:(\S+)/.exec(info)?.[1] ?? '?',
  };
}

async function main(): Promise<void> {
  const cli = parseCli();
  const started = new Date();
  const t0 = Date.now();
  const log = (m: string) => console.log(`[bench +${((Date.now() - t0) / 1000).toFixed(1)}s] ${m}`);
  const servers =
    needsStack(cli) && cli.topology.servers === 'private' ? await startTopologyServers(cli.topology) : null;
  if (servers) useBenchServer(servers.postgres.url);
  log(`topology ${describeTopology(cli.topology)}`);
  try {
    await benchmark(cli, started, log, servers);
  } finally {
    await servers?.postgres.remove();
    await servers?.redis.remove();
  }
}

async function benchmark(
  cli: ReturnType<typeof parseCli>,
  started: Date,
  log: (m: string) => void,
  servers: { postgres: PrivatePostgres; redis: PrivateServer } | null,
): Promise<void> {
  const catalogueOptions = benchCatalogue(cli.seed);
  const redisUrl = servers?.redis.url ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  mkdirSync(RESULTS_DIR, { recursive: true });
  const id = stamp(started);
  const profileDir = cli.profile ? join(RESULTS_DIR, 'profiles', id) : null;
  const results: Omit<BenchResults, 'targets' | 'finishedAt' | 'profiles' | 'loadavgAtEnd'> = {
    floor: [],
    startedAt: started.toISOString(),
    quick: cli.quick,
    machine: await machine(redisUrl),
    loadavgAtStart: loadavg(),
    settings: {
      parts: [...cli.only],
      runs: [...cli.runs],
      topology: {
        ...cli.topology,
        postgresSettings: servers?.postgres.settings ?? null,
        redisSettings: servers?.redis.settings ?? null,
      },
      apiProcesses: cli.apiProcesses,
      durationS: cli.durationS,
      packagesPerDevice: 100,
      catalogue: catalogueOptions,
      database: BENCH_DATABASE,
      profile: cli.profile,
      countReports: cli.countReports,
      pendingAnswers: cli.pendingAnswers,
      gitRevision: gitRevision(),
    },
    baselineLookupsPerS: null,
    baselinePostgresCpuMsPerLookup: null,
    ingest: [],
    drain: null,
    freshness: [],
    schema: null,
    retention: null,
    replicas: null,
  };
  log(
    `machine: ${results.machine.cpuModel} ×${results.machine.cpus}, load ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`,
  );

  let env: BenchEnv | null = null;
  if (needsStack(cli)) {
    const catalogue = new Catalogue(catalogueOptions);
    const template = await ensureBenchTemplate(catalogue, log);
    env = {
      quick: cli.quick,
      redisUrl,
      keyPrefix: 'safepkgbench',
      template,
      seedRows: catalogueOptions.knownApps,
      catalogue: catalogueOptions,
      apiProcesses: cli.apiProcesses,
      packagesPerDevice: 100,
      seed: cli.seed,
      topology: cli.topology,
      postgresPid: servers?.postgres.pid ?? null,
      profileDir,
      countReports: cli.countReports,
      pendingAnswers: cli.pendingAnswers,
      log,
    };
  }

  if (env && cli.only.has('ingest')) {
    const baseline = await runBaselineLookups(env, cli.quick ? 2 : 8);
    results.baselineLookupsPerS = baseline.lookupsPerS;
    results.baselinePostgresCpuMsPerLookup = baseline.postgresCpuMsPerLookup;
    log(
      `baseline: ${Math.round(baseline.lookupsPerS)} lookups/s with no ingest${baseline.postgresCpuMsPerLookup === null ? '' : `, ${baseline.postgresCpuMsPerLookup.toFixed(2)} ms of PostgreSQL CPU each`}`,
    );
    const run = async (spec: IngestSpec): Promise<IngestResult> => {
      log(
        `${spec.scenario} ${spec.writeMode} ${spec.rate ? `${spec.rate} req/s fixed` : 'closed loop'} for ${spec.durationS} s …`,
      );
      const r = await runIngest(env as BenchEnv, spec);
      results.ingest.push(r);
      log(
        `  ${Math.round(r.load.packagesPerS)} pkg/s, p50/p95/p99 ${r.load.latencyMs.p50.toFixed(1)}/${r.load.latencyMs.p95.toFixed(1)}/${r.load.latencyMs.p99.toFixed(1)} ms, ` +
          `errors ${r.load.errors}, non-2xx ${r.load.non2xx}, ${r.postgres.newPackages} new, ${r.postgres.writeTransactions} write xacts, ` +
          `${Math.round(r.lookupsPerS)} lookups/s, ${r.checkPath.postgresLookupsPerRequest.toFixed(2)} packages looked up in PG/request, ${r.checkPath.pendingAnswersPerRequest.toFixed(1)} answered pending from the buffer${r.drainAfterLoadMs !== null ? `, drained ${r.drainAfterLoadMs} ms after` : ''}`,
      );
      return r;
    };
    // The floor server under the load of an api run just finished (same stream, cores and
    // cache): at the rate that run achieved, and for a closed-loop run also at its own maximum.
    const floor = async (like: IngestResult): Promise<void> => {
      for (const kind of like.spec.rate ? (['same-rate'] as const) : (['same-rate', 'max'] as const)) {
        const f = await runFloor(env as BenchEnv, like, kind, Math.min(like.spec.durationS, 10));
        results.floor.push(f);
        log(
          `  floor (${kind}, like ${f.like}): ${Math.round(f.load.packagesPerS)} pkg/s, ${f.cpu.usPerPackage.toFixed(2)} µs CPU/pkg`,
        );
      }
    };
    const modes = ['buffered', 'direct'] as const;
    const closed = async (scenario: ScenarioName) => {
      const out: IngestResult[] = [];
      for (const writeMode of modes)
        out.push(await run({ scenario, writeMode, durationS: cli.durationS, connections: 32 }));
      // The floor at buffered's rate: the targets are buffered's.
      await floor(out[0] as IngestResult);
      return out;
    };
    const runs = cli.runs;
    if (runs.has('hit')) {
      // The cache-hit path: every write mode answers it alike, so it runs once.
      const hit = await run({
        scenario: 'hit',
        writeMode: 'buffered',
        durationS: cli.durationS,
        connections: 32,
      });
      await floor(hit);
    }
    if (runs.has('steady')) await closed('steady');
    if (runs.has('steady-fixed'))
      for (const writeMode of modes)
        await run({
          scenario: 'steady',
          writeMode,
          durationS: cli.durationS,
          connections: 64,
          rate: cli.steadyRate,
        });
    if (runs.has('new')) await closed('new');
    let stormRate = cli.stormRate;
    if (runs.has('storm')) {
      const stormMax = await closed('storm');
      // Equal offered load for both modes: 60 % of the slower mode's closed-loop rate, unless given.
      stormRate ??= Math.max(10, Math.round(0.6 * Math.min(...stormMax.map((r) => r.load.requestsPerS))));
    }
    // Without the closed-loop storm to calibrate on: a rate any machine that runs the tests sustains.
    stormRate ??= 40;
    if (runs.has('storm-fixed')) {
      const fixed: IngestResult[] = [];
      for (const writeMode of modes)
        fixed.push(
          await run({
            scenario: 'storm',
            writeMode,
            durationS: cli.durationS,
            connections: 64,
            rate: stormRate,
          }),
        );
      await floor(fixed[0] as IngestResult);
    }
    if (runs.has('stall')) {
      // The same load with PostgreSQL refusing writes for 3 s in the middle (reads go on).
      const writeStall = { atS: Math.floor(cli.durationS / 3), forMs: 3000 };
      for (const writeMode of modes)
        await run({
          scenario: 'storm',
          writeMode,
          durationS: cli.durationS,
          connections: 128,
          rate: stormRate,
          writeStall,
        });
    }
  }

  if (env && cli.only.has('drain')) {
    log(`drain: filling the buffer with ${cli.drainEntries} entries`);
    results.drain = await runDrain(env, cli.drainEntries, cli.countReports);
    log(
      `drain${results.drain.withReports ? ' (1 report per entry)' : ' (no reports)'}: ${Math.round(results.drain.rowsPerS)} rows/s; ${results.drain.statementsPerBatch} statements per batch; 40k dedupe ${Math.round(results.drain.dedupe40kMs.median)} ms`,
    );
  }

  if (env && cli.only.has('freshness')) {
    for (const source of cli.quick ? (['buffer'] as const) : (['api', 'buffer'] as const)) {
      log(
        `freshness: 20,000 new packages/s ${source === 'api' ? 'through the api' : 'fed straight into the buffer'}`,
      );
      const f = await runFreshness(env, source, 20_000, cli.quick ? 4 : 15);
      results.freshness.push(f);
      log(
        `freshness (${source}): ${Math.round(f.achievedNewPerS)} new/s achieved, lag p50 ${f.lagMs.p50} ms, p99 ${f.lagMs.p99} ms over ${f.rowsObserved} rows`,
      );
    }
  }

  if (env && cli.only.has('replicas')) {
    if (!servers)
      throw new Error('the replicas part needs the split topology (its own primary to replicate)');
    results.replicas = await runReplicaBench({
      env,
      primary: servers.postgres,
      probeS: cli.replicaProbeS,
      drainEntries: cli.replicaDrainEntries,
      lagSampleMs: cli.replicaLagSampleMs,
      log,
    });
    const x = results.replicas;
    const c = x.capacity;
    const d = x.drain;
    const lag = x.lag.duringDrain;
    log(
      `replicas (a) capacity: lookups/s primary alone ${c.primaryAlone.lookupsPerS} (p50/p99 ${c.primaryAlone.p50Ms}/${c.primaryAlone.p99Ms} ms), replica alone ${c.replicaAlone.lookupsPerS} (${c.replicaAlone.p50Ms}/${c.replicaAlone.p99Ms} ms), both ${c.both.primary.lookupsPerS} + ${c.both.replica.lookupsPerS} = ${c.both.totalLookupsPerS} (${c.bothOverPrimary}× the primary alone)`,
    );
    log(
      `replicas (b) isolation: drain of ${d.entries} entries ${d.rowsPerS} rows/s; lookups/s during/without the drain: primary ${d.during.primary.lookupsPerS}/${d.baseline.primary.lookupsPerS} (${d.ratios.primaryLookups}×, p99 ${d.during.primary.p99Ms}/${d.baseline.primary.p99Ms} ms), replica ${d.during.replica.lookupsPerS}/${d.baseline.replica.lookupsPerS} (${d.ratios.replicaLookups}×, p99 ${d.during.replica.p99Ms}/${d.baseline.replica.p99Ms} ms)`,
    );
    log(
      `replicas (c) lag during the drain (${lag.samples} samples every ~${lag.meanIntervalMs} ms): bytes behind p99 ${lag.bytesBehind.p99}, max ${lag.bytesBehind.max}; api lag p99 ${lag.lagMs.p99} ms, max ${lag.lagMs.max} ms; ${lag.replayDelayMs.samples} commits seen replayed ≤ p99 ${lag.replayDelayMs.p99} / max ${lag.replayDelayMs.max} ms after commit; last commit replayed ${x.lag.catchUp ? `${x.lag.catchUp.lowerMs}–${x.lag.catchUp.upperMs} ms after it` : '(not seen)'}; WAL ${x.lag.afterDrain.walBytes === null ? '?' : (x.lag.afterDrain.walBytes / 2 ** 20).toFixed(1)} MB`,
    );
  }

  if (env) {
    // Nothing of the benchmark stays in the shared Redis (cache entries would linger an hour).
    const redis = new Redis(env.redisUrl);
    await deletePrefix(redis, env.keyPrefix);
    redis.disconnect();
  }

  if (cli.only.has('schema')) {
    // issue 9's schema measurements keep their database on the shared server between runs.
    useBenchServer(null);
    results.schema = await runSchemaBench({ packages: cli.schemaPackages, quick: cli.quick, log });
    const s = results.schema;
    log(
      `schema: lookup ${s.lookup.speedup.toFixed(2)}×, flush insert ${s.flushInsert.ratio.toFixed(2)}×, trigger ${s.evaluationTrigger.speedup.toFixed(2)}×`,
    );
  }

  if (cli.only.has('retention')) {
    useBenchServer(null);
    results.retention = await runRetentionBench({
      rows: cli.retentionRows,
      keptRows: cli.retentionKept,
      batchSize: cli.retentionBatchSize,
      pauseMs: cli.retentionPauseMs,
      baselineS: cli.durationS,
      concurrency: 4,
      keysPerLookup: 100,
      redisUrl: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
      seed: cli.seed,
      log,
    });
    const t = results.retention;
    log(
      `retention: ${t.sweep.deleted} rows swept in ${t.sweep.seconds} s (batches of ${t.batchSize}, mean ${t.sweep.meanBatchMs} ms, paused ${t.pauseMs} ms between them); lookup p99 ${t.duringSweep.p99Ms} ms vs ${t.baseline.p99Ms} ms without (${t.p99Ratio}×)`,
    );
  }

  const profiles = profileDir
    ? findProfiles(profileDir).map((f) => ({ ...summariseProfile(f), file: relative(RESULTS_DIR, f) }))
    : [];
  const full: BenchResults = {
    ...results,
    finishedAt: new Date().toISOString(),
    loadavgAtEnd: loadavg(),
    targets: checkTargets(results),
    profiles,
  };
  writeFileSync(join(RESULTS_DIR, `${id}.json`), `${JSON.stringify(full, null, 2)}\n`);
  const md = markdown(full);
  writeFileSync(join(RESULTS_DIR, `${id}.md`), `${md}\n`);

  const chart = async (spec: TopLevelSpec, name: string) => {
    const overlaps = await renderSvg(spec, chartPath(RESULTS_DIR, id, name));
    if (overlaps.length) log(`chart ${name}: axis labels overlap: ${overlaps.join('; ')}`);
  };
  if (full.ingest.length) {
    const label = (spec: IngestSpec) =>
      `${spec.scenario} ${spec.rate ? 'fixed' : 'max'}${spec.writeStall ? ' +stall' : ''}`;
    const bars = (value: (r: IngestResult) => number): BarDatum[] =>
      full.ingest.map((r) => ({ run: label(r.spec), mode: r.spec.writeMode, value: value(r) }));
    await chart(
      groupedBars(
        'Checked packages per second (tick: the floor server, closed loop)',
        'packages/s',
        bars((r) => r.load.packagesPerS),
        full.floor
          .filter((f) => f.kind === 'max')
          .map((f) => ({ run: label(f.spec), value: f.load.packagesPerS })),
      ),
      'throughput',
    );
    await chart(
      groupedBars(
        'api CPU per checked package (tick: the floor server at the same request rate)',
        'µs of CPU per package',
        bars((r) => r.apiCpu.usPerPackage),
        // Drawn over the run it repeated (its own spec carries the rate it was driven at).
        full.floor
          .filter((f) => f.kind === 'same-rate')
          .map((f) => ({
            run: label(f.likeSpec),
            value: f.cpu.usPerPackage,
          })),
      ),
      'cpu',
    );
    const stalled = full.ingest.filter((r) => r.spec.writeStall);
    if (stalled.length)
      await chart(
        p99OverTime(
          'Storm at a fixed rate through a 3 s PostgreSQL write stall: p99 per second',
          stalled.flatMap((r) =>
            r.load.perSecond.map((p) => ({ mode: r.spec.writeMode, second: p.second, p99Ms: p.p99Ms })),
          ),
          stalled.flatMap((r) =>
            r.writeStallWindowS ? [{ mode: r.spec.writeMode, ...r.writeStallWindowS }] : [],
          ),
        ),
        'stall',
      );
    await chart(
      groupedBars(
        'Request latency p99',
        'p99 (ms)',
        bars((r) => r.load.latencyMs.p99),
      ),
      'p99',
    );
    const pg = full.ingest.flatMap((r) => {
      const us = postgresUsPerPackage(full.baselinePostgresCpuMsPerLookup, r);
      return us === null ? [] : [{ run: label(r.spec), mode: r.spec.writeMode, value: us }];
    });
    if (pg.length)
      await chart(
        groupedBars(
          "PostgreSQL's CPU per checked package (the probe's lookups taken out)",
          'µs of PostgreSQL CPU per package',
          pg,
        ),
        'postgres',
      );
    await chart(
      groupedBars(
        'Lookup capacity left (100-key lookups/s)',
        'lookups/s',
        bars((r) => r.lookupsPerS),
      ),
      'lookups',
    );
  }
  if (full.drain)
    await chart(
      drainLine(
        `Drain of ${full.drain.entries.toLocaleString('en-US')} buffered entries`,
        full.drain.depthOverTime,
      ),
      'drain',
    );
  console.log(`\n${md}`);
  log(`results: ${relative(process.cwd(), join(RESULTS_DIR, `${id}.json`))} (+ .md, charts)`);
}

/** So a result can be matched to the code it measured; null outside a git checkout. */
function gitRevision(): string | null {
  try {
    const rev = execFileSync('git', ['rev-parse', '--short', 'HEAD'], {
      cwd: __dirname,
      encoding: 'utf8',
    }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', '.'], {
      cwd: join(__dirname, '..'),
      encoding: 'utf8',
    }).trim();
    return dirty ? `${rev}+dirty-bench` : rev;
  } catch {
    return null;
  }
}

main().catch((err: unknown) => {
  console.error('benchmark failed:', err);
  process.exit(1);
});
