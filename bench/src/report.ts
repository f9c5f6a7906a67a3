import type { DrainResult } from './drain';
import type { FreshnessResult } from './freshness';
import type { FloorResult, IngestResult } from './ingest-run';
import type { SelfTime } from './profile-summary';
import type { ReplicaResult } from './replica-bench';
import type { RetentionResult } from './retention-bench';
import type { SchemaResult } from './schema-bench';
import { round } from './stats';

export interface BenchResults {
  startedAt: string;
  finishedAt: string;
  quick: boolean;
  machine: {
    cpuModel: string;
    cpus: number;
    totalMemMb: number;
    node: string;
    postgres: string;
    redis: string;
  };
  loadavgAtStart: number[];
  loadavgAtEnd: number[];
  settings: Record<string, unknown>;
  baselineLookupsPerS: number | null;
  /** PostgreSQL CPU per probe lookup on the idle database (private server only). */
  baselinePostgresCpuMsPerLookup: number | null;
  ingest: IngestResult[];
  /** The floor server under the same loads (see floor-server.ts). */
  floor: FloorResult[];
  drain: DrainResult | null;
  freshness: FreshnessResult[];
  schema: SchemaResult | null;
  retention: RetentionResult | null;
  /** Issue 16's replica measurement (replica-bench.ts). */
  replicas: ReplicaResult | null;
  targets: TargetCheck[];
  profiles: { file: string; totalMs: number; top: SelfTime[]; byModule: SelfTime[] }[];
}

export interface TargetCheck {
  target: string;
  measured: string;
  met: boolean | null;
}

const fmt = (n: number | null | undefined, d = 0) =>
  n === null || n === undefined || Number.isNaN(n) ? '–' : round(n, d).toLocaleString('en-US');

function find(
  ingest: IngestResult[],
  scenario: string,
  mode: string,
  fixed: boolean,
  stall = false,
): IngestResult | undefined {
  return ingest.find(
    (r) =>
      r.spec.scenario === scenario &&
      r.spec.writeMode === mode &&
      Boolean(r.spec.rate) === fixed &&
      Boolean(r.spec.writeStall) === stall,
  );
}

/**
 * The floor at equal request rate for a run: repeating that run, or (the direct run of a
 * closed-loop pair) repeating its buffered twin of the same scenario and load.
 */
export function floorFor(floor: readonly FloorResult[], run: IngestResult): FloorResult | undefined {
  const same = floor.filter((f) => f.kind === 'same-rate');
  return (
    same.find((f) => f.like === run.name) ??
    same.find(
      (f) =>
        f.likeSpec.scenario === run.spec.scenario &&
        f.likeSpec.rate === run.spec.rate &&
        f.likeSpec.connections === run.spec.connections &&
        Boolean(f.likeSpec.writeStall) === Boolean(run.spec.writeStall),
    )
  );
}

/** api CPU per package ÷ the floor's, or null without a floor for the run. */
export function overFloor(floor: readonly FloorResult[], run: IngestResult): number | null {
  const f = floorFor(floor, run);
  return f ? run.apiCpu.usPerPackage / f.cpu.usPerPackage : null;
}

/**
 * PostgreSQL CPU µs per checked package of a run, the probe's lookups taken out at their
 * idle-database cost: what the load itself (lookups of misses, inserts, report counts, the
 * flush) cost the database. Null without the private server's measurements.
 */
export function postgresUsPerPackage(perLookupMs: number | null, run: IngestResult): number | null {
  const c = run.postgresCpu;
  if (!c || perLookupMs === null || run.apiCpu.packages === 0) return null;
  return (Math.max(0, c.ms - c.probeLookups * perLookupMs) * 1000) / run.apiCpu.packages;
}

const ratio = (a: number | null, b: number | null) => (a === null || b === null || b === 0 ? null : a / b);

/** Each target of the brief, from what was measured; null = not measured in this run. */
export function checkTargets(
  r: Omit<BenchResults, 'targets' | 'finishedAt' | 'profiles' | 'loadavgAtEnd'>,
): TargetCheck[] {
  const out: TargetCheck[] = [];
  const add = (target: string, measured: string, met: boolean | null) => out.push({ target, measured, met });
  for (const [scenario, fixed, bound] of [
    ['hit', false, 1.5],
    ['new', false, 2.5],
    ['storm', false, 2.5],
  ] as const) {
    const run = find(r.ingest, scenario, 'buffered', fixed);
    const ratio = run ? overFloor(r.floor, run) : null;
    if (!run || ratio === null) continue;
    const f = floorFor(r.floor, run) as FloorResult;
    add(
      `${{ hit: 'cache-hit path', new: 'all-new storm, buffered', storm: 'storm (50 % new), buffered' }[scenario]}, closed loop: api CPU per package ≤ ${bound}× the floor`,
      `${fmt(run.apiCpu.usPerPackage, 2)} / ${fmt(f.cpu.usPerPackage, 2)} µs = ${fmt(ratio, 2)}×`,
      ratio <= bound,
    );
  }
  const steady = find(r.ingest, 'steady', 'buffered', true) ?? find(r.ingest, 'steady', 'buffered', false);
  if (steady) {
    add(
      'steady buffered ≥ 100,000 packages/s at p99 < 50 ms',
      `${fmt(steady.load.packagesPerS)} pkg/s, p99 ${fmt(steady.load.latencyMs.p99, 1)} ms (${steady.name})`,
      steady.load.packagesPerS >= 100_000 && steady.load.latencyMs.p99 < 50,
    );
  }
  const sb = find(r.ingest, 'storm', 'buffered', true);
  const sd = find(r.ingest, 'storm', 'direct', true);
  if (sb && sd) {
    const p = sb.load.latencyMs.p99 / sd.load.latencyMs.p99;
    add(
      'storm, equal fixed load: buffered p99 ≤ ½ direct p99',
      `${fmt(sb.load.latencyMs.p99, 1)} / ${fmt(sd.load.latencyMs.p99, 1)} ms = ${fmt(p, 2)}`,
      p <= 0.5,
    );
    const w = sb.postgres.writeTransactionsPer10k / Math.max(1e-9, sd.postgres.writeTransactionsPer10k);
    add(
      'storm: PostgreSQL write transactions per 10k new packages, buffered ≤ 1 % of direct',
      `${fmt(sb.postgres.writeTransactionsPer10k, 2)} / ${fmt(sd.postgres.writeTransactionsPer10k, 1)} = ${fmt(w * 100, 2)} %`,
      w <= 0.01,
    );
    const l = sb.lookupsPerS / Math.max(1e-9, sd.lookupsPerS);
    add(
      'storm: lookup capacity left, buffered ≥ 1.3× direct',
      `${fmt(sb.lookupsPerS)} / ${fmt(sd.lookupsPerS)} lookups/s = ${fmt(l, 2)}×`,
      l >= 1.3,
    );
  }
  const mb = find(r.ingest, 'storm', 'buffered', false);
  const md = find(r.ingest, 'storm', 'direct', false);
  if (mb && md) {
    const t = mb.load.packagesPerS / Math.max(1e-9, md.load.packagesPerS);
    add(
      'storm max throughput: buffered ≥ direct',
      `${fmt(mb.load.packagesPerS)} / ${fmt(md.load.packagesPerS)} pkg/s = ${fmt(t, 2)}×`,
      t >= 1,
    );
  }
  if (r.drain) {
    add(
      'drain ≥ 50,000 rows/s',
      `${fmt(r.drain.rowsPerS)} rows/s over ${fmt(r.drain.entries)} entries`,
      r.drain.rowsPerS >= 50_000,
    );
    add(
      '≤ 10 statements per 10k flushed rows',
      `${fmt(r.drain.statementsPer10kRows, 1)} (${r.drain.statementsPerBatch} per batch)`,
      r.drain.statementsPer10kRows <= 10,
    );
    add(
      '40k-row dedupe insert with RETURNING ≤ 0.6 s',
      `${fmt(r.drain.dedupe40kMs.median)} ms (median of ${r.drain.dedupe40kMs.runs.length})`,
      r.drain.dedupe40kMs.median <= 600,
    );
  }
  for (const f of r.freshness) {
    add(
      `freshness lag p99 < 2 s at 20k new packages/s (${f.source === 'api' ? 'through the api' : 'fed into the buffer'})`,
      `p50 ${fmt(f.lagMs.p50)} ms, p99 ${fmt(f.lagMs.p99)} ms at ${fmt(f.achievedNewPerS)} new pkg/s achieved`,
      f.achievedNewPerS >= 19_000 ? f.lagMs.p99 < 2000 : false,
    );
  }
  if (r.schema) {
    const s = r.schema;
    add(
      'schema: status-column lookup ≥ 2× faster than the join (client round trip)',
      `${fmt(s.lookup.statusColumnsMs, 2)} vs ${fmt(s.lookup.joinMs, 2)} ms = ${fmt(s.lookup.speedup, 2)}×`,
      s.lookup.speedup >= 2,
    );
    add(
      'schema: same, server execution time only',
      `${fmt(s.lookup.statusServerMs, 2)} vs ${fmt(s.lookup.joinServerMs, 2)} ms = ${fmt(s.lookup.serverSpeedup, 2)}×`,
      s.lookup.serverSpeedup >= 2,
    );
    add(
      'schema: flush insert with status columns ≤ 1.1× without',
      `${fmt(s.flushInsert.withStatusMs)} vs ${fmt(s.flushInsert.bareMs)} ms = ${fmt(s.flushInsert.ratio, 2)}×`,
      s.flushInsert.ratio <= 1.1,
    );
    add(
      'schema: statement-level trigger ≥ 1.3× faster than row-level',
      `${fmt(s.evaluationTrigger.statementLevelMs)} vs ${fmt(s.evaluationTrigger.rowLevelMs)} ms = ${fmt(s.evaluationTrigger.speedup, 2)}×`,
      s.evaluationTrigger.speedup >= 1.3,
    );
  }
  if (r.retention) {
    const t = r.retention;
    add(
      `retention: lookup p99 while ${fmt(t.rows)} rows are swept (pause ${fmt(t.pauseMs)} ms) ≤ 1.2× without a sweep`,
      `${fmt(t.duringSweep.p99Ms, 2)} vs ${fmt(t.baseline.p99Ms, 2)} ms = ${fmt(t.p99Ratio, 2)}×`,
      t.p99Ratio <= 1.2,
    );
  }
  return out;
}

export function markdown(r: BenchResults): string {
  const lines: string[] = [];
  lines.push(`# safepkg benchmark ${r.startedAt}${r.quick ? ' (quick)' : ''}`, '');
  const topology = r.settings.topology as { layout?: string } | undefined;
  lines.push(
    `Topology: ${topology?.layout ?? 'shared'} (placement in settings.topology of the JSON).`,
    `Machine: ${r.machine.cpuModel}, ${r.machine.cpus} cores, ${fmt(r.machine.totalMemMb)} MB; node ${r.machine.node}; ${r.machine.postgres}; Redis ${r.machine.redis}.`,
    `Load average at start ${r.loadavgAtStart.map((x) => x.toFixed(2)).join(' ')}, at end ${r.loadavgAtEnd.map((x) => x.toFixed(2)).join(' ')} (the machine is shared: numbers are noisy).`,
    `Settings: ${Object.entries(r.settings)
      .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
      .join(', ')}.`,
    '',
  );
  if (r.ingest.length) {
    lines.push('## Ingest scenarios', '');
    lines.push(
      '| run | load | pkg/s | req/s | p50 ms | p95 ms | p99 ms | errors / non-2xx | new pkgs | PG write xacts | per 10k new | lookups/s left | pkgs looked up in PG / req | pending from buffer / req | drain after | api µs CPU/pkg | ÷ floor | PG µs CPU/pkg |',
    );
    lines.push('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const x of r.ingest) {
      const l = x.load;
      lines.push(
        `| ${x.spec.scenario} ${x.spec.writeMode} | ${x.spec.rate ? `${x.spec.rate} req/s fixed` : `closed, ${x.spec.connections} conns`}${x.spec.writeStall ? `, writes blocked ${x.spec.writeStall.forMs / 1000} s` : ''} | ${fmt(l.packagesPerS)} | ${fmt(l.requestsPerS)} | ${fmt(l.latencyMs.p50, 1)} | ${fmt(l.latencyMs.p95, 1)} | ${fmt(l.latencyMs.p99, 1)} | ${l.errors} / ${l.non2xx} | ${fmt(x.postgres.newPackages)} | ${fmt(x.postgres.writeTransactions)} | ${fmt(x.postgres.writeTransactionsPer10k, 2)} | ${fmt(x.lookupsPerS)} | ${fmt(x.checkPath.postgresLookupsPerRequest, 1)} | ${fmt(x.checkPath.pendingAnswersPerRequest, 1)} | ${x.drainAfterLoadMs === null ? '–' : `${fmt(x.drainAfterLoadMs)} ms`} | ${fmt(x.apiCpu.usPerPackage, 2)} | ${fmt(overFloor(r.floor, x), 2)} | ${fmt(postgresUsPerPackage(r.baselinePostgresCpuMsPerLookup, x), 2)} |`,
      );
    }
    if (r.floor.length) {
      lines.push(
        '',
        'Floor server (node:http, JSON.parse, one MGET, an answer of the same shape; as many processes, the same cores, device stream and cache). `same-rate`: at the request rate the api run achieved (what ÷ floor divides by); `max`: closed loop.',
        '',
        '| like run | load | pkg/s | p99 ms | µs CPU/pkg | cores busy |',
        '|---|---|---:|---:|---:|---:|',
        ...r.floor.map(
          (f) =>
            `| ${f.like} | ${f.kind}${f.spec.rate ? `, ${f.spec.rate} req/s` : ''} | ${fmt(f.load.packagesPerS)} | ${fmt(f.load.latencyMs.p99, 1)} | ${fmt(f.cpu.usPerPackage, 2)} | ${fmt(f.cpu.coresBusy, 2)} |`,
        ),
      );
    }
    lines.push(
      '',
      `Baseline lookup capacity (side process, 2 loops of 100-key lookupMany, nothing else on the database): ${fmt(r.baselineLookupsPerS)} lookups/s${r.baselinePostgresCpuMsPerLookup === null ? '' : `, ${fmt(r.baselinePostgresCpuMsPerLookup, 3)} ms of PostgreSQL CPU each`}.`,
      '',
      "PG µs CPU/pkg: the private PostgreSQL's CPU (postmaster, backends and background processes, /proc) from the load's start until the buffer was drained (buffered) or the load ended (direct), less the probe's lookups at their baseline cost, per checked package. The probe gets more lookups done where the load leaves PostgreSQL more room, so with its share left in (the last ratio column) the figure leans towards the mode that leaves less; taken out at its idle cost, it assumes a lookup costs under load what it cost idle.",
      '',
    );
    const pairs: string[] = [];
    for (const [scenario, fixed, stall] of [
      ['steady', false, false],
      ['steady', true, false],
      ['storm', false, false],
      ['storm', true, false],
      ['storm', true, true],
    ] as const) {
      const b = find(r.ingest, scenario, 'buffered', fixed, stall);
      const d = find(r.ingest, scenario, 'direct', fixed, stall);
      if (!b || !d) continue;
      const pg = ratio(
        postgresUsPerPackage(r.baselinePostgresCpuMsPerLookup, b),
        postgresUsPerPackage(r.baselinePostgresCpuMsPerLookup, d),
      );
      // The probe's lookups left in (costed at 0): it leans the other way, since the probe gets
      // more lookups done (so takes more CPU) where the load leaves PostgreSQL more room.
      const pgRaw = ratio(postgresUsPerPackage(0, b), postgresUsPerPackage(0, d));
      pairs.push(
        `| ${scenario} ${fixed ? 'fixed' : 'max'}${stall ? ' + write stall' : ''} | ${fmt(b.load.packagesPerS / d.load.packagesPerS, 2)} | ${fmt(b.load.latencyMs.p99 / d.load.latencyMs.p99, 2)} | ${fmt(b.postgres.writeTransactionsPer10k / Math.max(1e-9, d.postgres.writeTransactionsPer10k), 4)} | ${fmt(b.lookupsPerS / Math.max(1e-9, d.lookupsPerS), 2)} | ${fmt(pg, 2)} | ${fmt(pgRaw, 2)} |`,
      );
    }
    if (pairs.length) {
      lines.push(
        'Ratios buffered / direct:',
        '',
        '| run | pkg/s | p99 | write xacts per 10k new | lookups/s left | PG CPU per pkg | same, probe left in |',
        '|---|---:|---:|---:|---:|---:|---:|',
        ...pairs,
        '',
      );
    }
  }
  if (r.drain) {
    const d = r.drain;
    lines.push(
      '## Flusher drain',
      '',
      `${fmt(d.entries)} entries pre-filled through RedisBuffer.add in ${fmt(d.fillMs)} ms; one flusher drained them in ${fmt(d.drainMs)} ms from the first drop = **${fmt(d.rowsPerS)} rows/s** (${fmt(d.rowsPerSFromStart)} rows/s counting process start). ${fmt(d.writeTransactions)} write transactions for ${fmt(d.newRows)} rows; ${d.statementsPerBatch} statements per ${'10k'} batch counted on the client = ${fmt(d.statementsPer10kRows, 1)} per 10k rows. 40k-row dedupe insert (half present) with RETURNING: ${d.dedupe40kMs.runs.map((x) => fmt(x)).join(', ')} ms. One ${fmt(d.batchPhasesMs.rows)}-row batch by step (median of 3): read ${fmt(d.batchPhasesMs.read)} ms, PostgreSQL transaction ${fmt(d.batchPhasesMs.insert)} ms, confirm ${fmt(d.batchPhasesMs.confirm)} ms = ${fmt(d.batchPhasesMs.rowsPerS)} rows/s for one sequential flusher.`,
      '',
    );
  }
  if (r.freshness.length) {
    lines.push(
      '## Freshness',
      '',
      '| source | offered new/s | achieved new/s | request p99 | rows seen | lag p50 | p90 | p99 | max |',
      '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
    );
    for (const f of r.freshness) {
      lines.push(
        `| ${f.source === 'api' ? 'devices → api' : 'straight into the buffer'} | ${fmt(f.offeredNewPerS)} | ${fmt(f.achievedNewPerS)} | ${f.load ? `${fmt(f.load.latencyMs.p99, 1)} ms` : '–'} | ${fmt(f.rowsObserved)} | ${fmt(f.lagMs.p50)} ms | ${fmt(f.lagMs.p90)} ms | ${fmt(f.lagMs.p99)} ms | ${fmt(f.lagMs.max)} ms |`,
      );
    }
    lines.push(
      '',
      `Lag = first check (api clock, stored as first_seen_at) → row seen by a poller (every ${r.freshness[0]?.pollIntervalMs} ms, 10 ms buckets).`,
      '',
    );
  }
  if (r.schema) {
    const s = r.schema;
    lines.push(
      '## Schema (issue 9)',
      '',
      `Scratch database with ${fmt(s.packages)} packages, ${s.evaluatedShare * 100} % evaluated.`,
      '',
      '| measurement | status columns / statement trigger | alternative | ratio |',
      '|---|---:|---:|---:|',
      `| 100-key lookup, client round trip (mean of ${s.lookup.iterations}) | ${fmt(s.lookup.statusColumnsMs, 2)} ms | join packages + latest evaluation: ${fmt(s.lookup.joinMs, 2)} ms | ${fmt(s.lookup.speedup, 2)}× faster |`,
      `| 100-key lookup, server execution time (EXPLAIN ANALYZE) | ${fmt(s.lookup.statusServerMs, 2)} ms | ${fmt(s.lookup.joinServerMs, 2)} ms | ${fmt(s.lookup.serverSpeedup, 2)}× faster |`,
      `| flush insert ${fmt(s.flushInsert.rows)} rows, half present (median) | ${fmt(s.flushInsert.withStatusMs)} ms | no status columns, plain key index: ${fmt(s.flushInsert.bareMs)} ms | ${fmt(s.flushInsert.ratio, 2)}× the cost |`,
      `| ${fmt(s.evaluationTrigger.evaluations)} evaluations in one INSERT (median) | ${fmt(s.evaluationTrigger.statementLevelMs)} ms | row-level trigger: ${fmt(s.evaluationTrigger.rowLevelMs)} ms | ${fmt(s.evaluationTrigger.speedup, 2)}× faster |`,
      '',
      `Status lookup plan: \`${s.lookup.statusPlan}\`, heap fetches ${s.lookup.statusHeapFetches ?? '–'}.`,
      '',
    );
  }
  if (r.retention) {
    const t = r.retention;
    const mb = (b: number) => fmt(b / 2 ** 20, 1);
    const row = (label: string, z: RetentionResult['sizes']['before']) =>
      `| ${label} | ${mb(z.tableBytes)} | ${Object.entries(z.indexBytes)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([n, b]) => `${n} ${mb(b)}`)
        .join(', ')} | ${mb(z.queueBytes)} | ${fmt(z.liveTuples)} | ${fmt(z.deadTuples)} |`;
    lines.push(
      '## Retention (issue 16)',
      '',
      `Scratch database: ${fmt(t.rows)} old packages (queued for analysis) swept in batches of ${t.batchSize} with a pause of ${fmt(t.pauseMs)} ms between batches (RETENTION_BATCH_PAUSE_MS), ${fmt(t.keptRows)} kept ones looked up by the probe. Autovacuum off on the table for the run.`,
      '',
      '| window | lookups | p50 ms | p99 ms |',
      '|---|---:|---:|---:|',
      `| no sweep | ${fmt(t.baseline.lookups)} | ${fmt(t.baseline.p50Ms, 2)} | ${fmt(t.baseline.p99Ms, 2)} |`,
      `| during the sweep | ${fmt(t.duringSweep.lookups)} | ${fmt(t.duringSweep.p50Ms, 2)} | ${fmt(t.duringSweep.p99Ms, 2)} |`,
      '',
      `Sweep: ${fmt(t.sweep.deleted)} rows in ${fmt(t.sweep.batches)} batches, ${fmt(t.sweep.seconds, 2)} s (${fmt(t.sweep.rowsPerS)} rows/s, mean batch ${fmt(t.sweep.meanBatchMs, 1)} ms, slowest ${fmt(t.sweep.maxBatchMs, 1)} ms, ${fmt(t.sweep.pausedS, 2)} s of it paused). VACUUM of packages and analysis_queue afterwards: ${fmt(t.vacuum.seconds, 2)} s.`,
      '',
      '| state | packages MB | indexes MB | analysis_queue MB | rows | dead tuples |',
      '|---|---:|---|---:|---:|---:|',
      row('before', t.sizes.before),
      row('after the sweep', t.sizes.afterSweep),
      row('after VACUUM', t.sizes.afterVacuum),
      '',
    );
  }
  if (r.replicas) lines.push(...replicaSection(r.replicas));
  lines.push('## Targets', '', '| target | measured | met |', '|---|---|---|');
  for (const t of r.targets)
    lines.push(`| ${t.target} | ${t.measured} | ${t.met === null ? '–' : t.met ? 'met' : '**not met**'} |`);
  lines.push('');
  if (r.profiles.length) {
    lines.push('## CPU profiles (top self time)', '');
    for (const p of r.profiles) {
      lines.push(`${p.file} (${fmt(p.totalMs)} ms sampled):`, '');
      for (const t of p.top.slice(0, 8)) lines.push(`- ${t.share} % ${t.fn}`);
      lines.push(
        `- by module: ${p.byModule
          .slice(0, 8)
          .map((t) => `${t.fn} ${t.share} %`)
          .join(', ')}`,
      );
      lines.push('');
    }
  }
  return lines.join('\n');
}

/** The replicas part: capacity, isolation from a drain, replication lag (numbers and ratios, no targets). */
export function replicaSection(x: ReplicaResult): string[] {
  const cores = (c: number[] | null) => (c ? `core ${c.join(',')}` : 'any core');
  const p = x.placement;
  const row = (label: string, s: { lookupsPerS: number; p50Ms: number; p99Ms: number; lookups: number }) =>
    `| ${label} | ${fmt(s.lookupsPerS)} | ${fmt(s.p50Ms, 2)} | ${fmt(s.p99Ms, 2)} | ${fmt(s.lookups)} |`;
  const c = x.capacity;
  const d = x.drain;
  const lag = (label: string, w: ReplicaResult['lag']['baseline']) =>
    `| ${label} | ${w.samples} | ${fmt(w.meanIntervalMs, 1)} | ${fmt(w.bytesBehind.p50)} | ${fmt(w.bytesBehind.p99)} | ${fmt(w.bytesBehind.max)} | ${fmt(w.lagMs.p50, 1)} | ${fmt(w.lagMs.p99, 1)} | ${fmt(w.lagMs.max, 1)} | ${w.replayDelayMs.samples} | ${fmt(w.replayDelayMs.p99, 1)} | ${fmt(w.replayDelayMs.max, 1)} |`;
  return [
    '## Read replica (issue 16)',
    '',
    `Placement: primary ${cores(p.primary)}, streaming replica (pg_basebackup -R, hot standby, same settings: ${x.replicaSettings.filter((s) => !s.startsWith('unix_socket')).join(' ')}) ${cores(p.replica)} (the api's cores; no api runs in this part); primary's probe ${cores(p.primaryProbe)}, replica's probe ${cores(p.replicaProbe)}, flusher ${cores(p.flusher)}, Redis ${cores(p.redis)}, benchmark process (fill, lag sampler) ${cores(p.benchProcess)}. Probe: ${x.probe.concurrency} loops of ${x.probe.keysPerLookup}-key lookupMany over the ${fmt(x.probe.packages)}-package catalogue, ${x.probe.seconds} s windows after ${x.probe.warmupS} s of warm-up; packages and its indexes prewarmed on both servers. Replica base backup + start: ${fmt(x.replicaStartMs)} ms.`,
    '',
    '| lookup capacity | lookups/s | p50 ms | p99 ms | lookups |',
    '|---|---:|---:|---:|---:|',
    row('primary alone', c.primaryAlone),
    row('replica alone', c.replicaAlone),
    row('both at once: primary', c.both.primary),
    row('both at once: replica', c.both.replica),
    '',
    `Cores allowed (/proc, during the drain phase): ${Object.entries(x.affinity)
      .map(([k, v]) => `${k} ${v ?? '–'}`)
      .join(', ')}.`,
    '',
    `Both at once: ${fmt(c.both.totalLookupsPerS)} lookups/s = ${fmt(c.bothOverPrimary, 2)}× the primary alone; the replica alone is ${fmt(c.replicaOverPrimary, 2)}× the primary alone.`,
    '',
    `Isolation from writes: ${fmt(d.entries)} entries pre-filled in ${fmt(d.fillMs)} ms; one flusher drained them into the primary in ${fmt(d.drainMs)} ms from the first drop (${fmt(d.rowsPerS)} rows/s, ${fmt(d.newRows)} new rows), both probes running; the baseline is the same two probes, buffer filled, no flusher, just before.`,
    '',
    '| probe | lookups/s without drain | during drain | ratio | p99 ms without | during | ratio |',
    '|---|---:|---:|---:|---:|---:|---:|',
    `| on the primary | ${fmt(d.baseline.primary.lookupsPerS)} | ${fmt(d.during.primary.lookupsPerS)} | ${fmt(d.ratios.primaryLookups, 2)} | ${fmt(d.baseline.primary.p99Ms, 2)} | ${fmt(d.during.primary.p99Ms, 2)} | ${fmt(d.ratios.primaryP99, 2)} |`,
    `| on the replica | ${fmt(d.baseline.replica.lookupsPerS)} | ${fmt(d.during.replica.lookupsPerS)} | ${fmt(d.ratios.replicaLookups, 2)} | ${fmt(d.baseline.replica.p99Ms, 2)} | ${fmt(d.during.replica.p99Ms, 2)} | ${fmt(d.ratios.replicaP99, 2)} |`,
    '',
    `Replication lag, sampled every ${x.lag.sampleIntervalMs} ms on the replica (bytes: the primary's pg_current_wal_lsn(), read after the replica's pg_last_wal_replay_lsn(), minus it; api lag: the ReadPool's own poll query, now() − the last replayed commit's time unless all received is replayed, so it counts a transaction's whole duration while its WAL streams, and is null (the api: lagging) before the replica has replayed any commit; replayed ≤ ms after commit: per commit first seen replayed, the sample's answer time minus its commit time):`,
    '',
    '| window | samples | mean interval ms | bytes behind p50 | p99 | max | api lag ms p50 | p99 | max | commits seen replayed | replayed ≤ ms after commit, p99 | max |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    lag('no drain', x.lag.baseline),
    lag('drain (flusher launch → last commit replayed)', x.lag.duringDrain),
    '',
    `WAL written from the flusher's launch to the empty buffer: ${x.lag.afterDrain.walBytes === null ? '–' : `${fmt(x.lag.afterDrain.walBytes / 2 ** 20, 1)} MB`}. ${
      x.lag.catchUp
        ? `The replica had replayed the last commit between ${fmt(x.lag.catchUp.lowerMs, 1)} and ${fmt(x.lag.catchUp.upperMs, 1)} ms after the primary committed it (its commit time from pg_last_xact_replay_timestamp(); bounds from the samples around it).`
        : 'No sample showed the last commit replayed.'
    }`,
    '',
  ];
}
