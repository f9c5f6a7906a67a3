import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ensureBenchTemplate, resetBenchDatabase, useBenchServer } from './bench-database';
import { appEnv, type BenchEnv } from './bench-env';
import { benchCatalogue, Catalogue } from './catalogue';
import { totalCpuMs } from './cpu-time';
import { DeviceSimulator } from './devices';
import { cpuPerPackage, SCENARIO_SHARES, warmCache, type ScenarioName } from './ingest-run';
import { runLoad } from './load';
import { startTopologyServers } from './private-servers';
import { startApp, type AppProcess } from './processes';
import { describeTopology, planTopology } from './topology';

const USAGE = `usage: node dist/api-compare.js --api=LABEL:path/to/apps/api/dist/main.js [--api=…] [--scenario=hit|new|steady|storm]
  [--rate=REQ_PER_S_EACH] [--connections=N_EACH] [--duration=S] [--rounds=N] [--profile-dir=DIR]
  [--encodings=identity,gzip,br] [--env=LABEL:NAME=VALUE …] [--warmup=S]`;

/**
 * CPU per checked package of several api builds and the floor server, side by side in one
 * load: each server gets the same request rate from one load generator at the same time, on
 * the same core(s), so a busy machine disturbs them alike. What it is for: before/after
 * ratios of a change on a machine that is not quiet (the full benchmark needs a quiet one).
 * Buffered mode (with a flusher) when the scenario has new packages. `--encodings` runs each api
 * once per Accept-Encoding (its own process, the same load), so the CPU and the bytes on the wire
 * per answer of compressing it sit beside the uncompressed ones. `--env=LABEL:NAME=VALUE` sets an
 * environment variable of one api only: the same build with and without a feature (e.g.
 * `SAFEPKG_TEST_NO_REPORTS=1`, the cost of counting reports) under the same load.
 */
async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      api: { type: 'string', multiple: true },
      scenario: { type: 'string', default: 'hit' },
      rate: { type: 'string', default: '100' },
      connections: { type: 'string', default: '16' },
      duration: { type: 'string', default: '8' },
      rounds: { type: 'string', default: '1' },
      'profile-dir': { type: 'string' },
      encodings: { type: 'string', default: 'identity' },
      env: { type: 'string', multiple: true },
      warmup: { type: 'string', default: '3' },
      help: { type: 'boolean', default: false },
    },
  });
  const apis = (values.api ?? []).map((a) => {
    const at = a.indexOf(':');
    return { label: a.slice(0, at), script: resolve(a.slice(at + 1)) };
  });
  const apiEnv = new Map<string, Record<string, string>>();
  for (const e of values.env ?? []) {
    const m = /^([^:]+):([A-Z_][A-Z0-9_]*)=(.*)$/.exec(e);
    if (!m) {
      console.log(USAGE);
      process.exit(2);
    }
    const [, label, name, value] = m as unknown as [string, string, string, string];
    apiEnv.set(label, { ...apiEnv.get(label), [name]: value });
  }
  const scenario = values.scenario as ScenarioName;
  const encodings = (values.encodings ?? 'identity').split(',').map((e) => e.trim());
  const knownEncodings = ['identity', 'gzip', 'br'];
  if (
    values.help ||
    apis.length === 0 ||
    !(scenario in SCENARIO_SHARES) ||
    encodings.some((e) => !knownEncodings.includes(e))
  ) {
    console.log(USAGE);
    process.exit(values.help ? 0 : 2);
  }
  const topology = planTopology('split');
  const servers = await startTopologyServers(topology);
  useBenchServer(servers.postgres.url);
  const log = (m: string) => console.log(m);
  log(`topology ${describeTopology(topology)}`);
  const env: BenchEnv = {
    quick: true,
    redisUrl: servers.redis.url,
    keyPrefix: 'safepkgbench',
    template: '',
    seedRows: 200_000,
    catalogue: benchCatalogue(20260101),
    apiProcesses: apis.length * encodings.length,
    packagesPerDevice: 100,
    seed: 20260101,
    topology,
    postgresPid: servers.postgres.pid,
    profileDir: null,
    countReports: true,
    pendingAnswers: true,
    log,
  };
  const started: AppProcess[] = [];
  try {
    env.template = await ensureBenchTemplate(new Catalogue(env.catalogue), log);
    const databaseUrl = await resetBenchDatabase(env.template);
    const base = appEnv(env, databaseUrl, { WRITE_MODE: 'buffered' });
    if (scenario !== 'hit') started.push(await startApp('flusher', base, [], topology.flusher));
    const targets: { label: string; proc: AppProcess; encoding: string }[] = [];
    const profileDir = values['profile-dir'];
    for (const a of apis) {
      for (const encoding of encodings) {
        const label = encodings.length > 1 ? `${a.label}/${encoding}` : a.label;
        const nodeArgs = profileDir
          ? ['--cpu-prof', `--cpu-prof-dir=${resolve(profileDir, label.replace('/', '-'))}`]
          : [];
        targets.push({
          label,
          encoding,
          proc: await startApp('api', { ...base, ...apiEnv.get(a.label) }, nodeArgs, topology.api, a.script),
        });
      }
    }
    targets.push({
      label: 'floor',
      encoding: 'identity',
      proc: await startApp('floor', base, [], topology.api),
    });
    started.push(...targets.map((t) => t.proc));
    if (scenario === 'hit') await warmCache(targets[0]?.proc as AppProcess, new Catalogue(env.catalogue));
    const simulator = new DeviceSimulator(new Catalogue(env.catalogue), {
      seed: env.seed,
      stream: scenario,
      packagesPerDevice: env.packagesPerDevice,
      shares: SCENARIO_SHARES[scenario],
    });
    const rate = Number(values.rate);
    const loadAll = (durationS: number) =>
      Promise.all(
        targets.map((t) =>
          runLoad({
            urls: [t.proc.url],
            durationS,
            connections: Number(values.connections),
            overallRate: rate,
            simulator,
            acceptEncoding: t.encoding === 'identity' ? undefined : t.encoding,
          }),
        ),
      );
    // Every server gets the same unreported load first: the cache warm-up above went through the
    // first api only, which left it better JIT-compiled than the others for round 1 (measured,
    // hit scenario, the same build with and without counting, in both orders: round 1 favoured
    // whichever api came first by about a quarter; later rounds did not).
    const warmupS = Number(values.warmup);
    if (warmupS > 0) await loadAll(warmupS);
    for (let round = 1; round <= Number(values.rounds); round++) {
      const pids = targets.map((t) => t.proc.child.pid as number);
      const before = pids.map((p) => totalCpuMs([p]));
      const loads = await loadAll(Number(values.duration));
      const perServer = targets.map((t, i) => {
        const load = loads[i] as (typeof loads)[number];
        return {
          label: t.label,
          load,
          cpu: cpuPerPackage(totalCpuMs([pids[i] as number]) - (before[i] as number), load, 100),
        };
      });
      const floor = perServer.find((s) => s.label === 'floor');
      log(`round ${round}, ${scenario}, ${rate} req/s to each server for ${values.duration} s:`);
      for (const s of perServer)
        log(
          `  ${s.label.padEnd(8)} ${Math.round(s.load.packagesPerS).toString().padStart(7)} pkg/s  p99 ${s.load.latencyMs.p99.toFixed(1).padStart(7)} ms  ${s.cpu.usPerPackage.toFixed(2).padStart(6)} µs CPU/pkg  ÷ floor ${floor ? (s.cpu.usPerPackage / floor.cpu.usPerPackage).toFixed(2) : '–'}  ${Math.round(s.load.bytesPerResponse).toString().padStart(7)} B/answer  non-2xx ${s.load.non2xx} errors ${s.load.errors}`,
        );
    }
  } finally {
    await Promise.all(started.map((p) => p.stop()));
    await servers.postgres.remove();
    await servers.redis.remove();
  }
}

main().catch((err: unknown) => {
  console.error('api-compare failed:', err);
  process.exit(1);
});
