import { readFileSync } from 'node:fs';
import { parseLsn, REPLICA_POLL_SQL } from '@safepkg/core';
import { Redis } from 'ioredis';
import { Client } from 'pg';
import { BENCH_DATABASE, insertedSince, resetBenchDatabase } from './bench-database';
import type { BenchEnv } from './bench-env';
import { Catalogue } from './catalogue';
import { fillBuffer, flushUntilEmpty } from './drain';
import { LookupProbe } from './lookup-probe';
import { startBenchReplica, type PrivatePostgres } from './private-servers';
import { sleep, waitFor } from './processes';
import { Random } from './random';
import { deletePrefix } from './redis-prefix';
import { catchUp, summariseLag, type CatchUp, type LagSample, type LagWindow } from './replica-lag';
import { percentiles, round } from './stats';

/**
 * Issue 16's replica measurement (README "Sizing and when to add what"): a streaming replica
 * of the benchmark's private primary on the api's cores (the bench runs no api here), then
 *  a) lookup capacity: the baseline lookup probe against the primary alone, the replica alone,
 *     and both at once;
 *  b) isolation from writes: both probes while one flusher drains a pre-filled buffer into the
 *     primary, beside the same probes without a drain just before it;
 *  c) replication lag during that drain, sampled as the api's ReadPool polls it, and how long
 *     after the drain's last commit the replica had replayed it.
 * Each probe runs on its server's cores, as the existing baseline probe shares the primary's:
 * every measured lookup pays its client on the same core as its server, for both servers alike.
 */
export interface ReplicaBenchOptions {
  env: BenchEnv;
  primary: PrivatePostgres;
  /** Length of each probe window, s (a warm-up second before each is left out). */
  probeS: number;
  drainEntries: number;
  lagSampleMs: number;
  log: (m: string) => void;
}

export interface ProbeStat {
  lookups: number;
  lookupsPerS: number;
  p50Ms: number;
  p99Ms: number;
}

export interface ReplicaResult {
  /** Cores of each process (null = not pinned). */
  placement: {
    primary: number[] | null;
    replica: number[] | null;
    primaryProbe: number[] | null;
    replicaProbe: number[] | null;
    flusher: number[] | null;
    redis: number[] | null;
    /** The benchmark process: buffer fill, lag sampler. */
    benchProcess: number[] | null;
  };
  /**
   * Cpus_allowed_list of the processes as they ran (from /proc), to show the pinning took:
   * the postmasters (their backends are forked from them) and the probes of the drain phase.
   */
  affinity: Record<string, string | null>;
  replicaSettings: string[];
  probe: { concurrency: number; keysPerLookup: number; seconds: number; warmupS: number; packages: number };
  /** The replica's base backup and start until streaming, ms. */
  replicaStartMs: number;
  capacity: {
    primaryAlone: ProbeStat;
    replicaAlone: ProbeStat;
    both: { primary: ProbeStat; replica: ProbeStat; totalLookupsPerS: number };
    /** replica alone ÷ primary alone; both together ÷ primary alone (lookups/s). */
    replicaOverPrimary: number;
    bothOverPrimary: number;
  };
  drain: {
    entries: number;
    fillMs: number;
    drainMs: number;
    rowsPerS: number;
    newRows: number;
    /** Both probes with the buffer filled but no flusher, just before the drain. */
    baseline: { primary: ProbeStat; replica: ProbeStat };
    /** Both probes from the first drop in depth until the buffer was empty. */
    during: { primary: ProbeStat; replica: ProbeStat };
    /** during ÷ baseline, per server. */
    ratios: {
      primaryLookups: number;
      replicaLookups: number;
      primaryP99: number;
      replicaP99: number;
    };
  };
  lag: {
    sampleIntervalMs: number;
    baseline: LagWindow;
    /** From the flusher's launch until the replica had replayed the drain's last commit. */
    duringDrain: LagWindow;
    /** The primary's position once the buffer was empty, and the WAL written since the flusher's launch. */
    afterDrain: { primaryLsn: string; walBytes: number | null };
    /** When the replica had replayed the last commit it had once it held all of that WAL. */
    catchUp: CatchUp | null;
    /** Every sample from the no-drain baseline on: [ms since the flusher's launch, bytes behind, api lag ms]. */
    samples: [number, number, number | null][];
  };
}

/** A process's allowed cores as the kernel reports them, or null if it is gone. */
function allowedCores(pid: number | undefined): string | null {
  if (pid === undefined) return null;
  try {
    return /Cpus_allowed_list:\s*(\S+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? null;
  } catch {
    return null;
  }
}

const PROBE_CONCURRENCY = 2;
const KEYS_PER_LOOKUP = 100;
const WARMUP_S = 1;

function databaseUrl(serverUrl: string, database: string): string {
  const u = new URL(serverUrl);
  u.pathname = `/${database}`;
  return u.toString();
}

function stat(probe: LookupProbe, fromMs: number, toMs: number): ProbeStat {
  const from = probe.markAt(fromMs);
  const to = probe.markAt(toMs);
  const ms = probe.latencies(from, to);
  const [p50 = Number.NaN, p99 = Number.NaN] = percentiles(ms, [50, 99]);
  return {
    lookups: to.lookups - from.lookups,
    lookupsPerS: Math.round(LookupProbe.rate(from, to)),
    p50Ms: round(p50, 2),
    p99Ms: round(p99, 2),
  };
}

/** Samples the replica's lag every `intervalMs` (the next one `intervalMs` after the last was sent). */
class LagSampler {
  readonly samples: LagSample[] = [];
  /** Why sampling stopped early, if it did. */
  failed: Error | null = null;
  private running = true;
  private loop: Promise<void> | null = null;

  private constructor(
    private readonly replica: Client,
    private readonly primary: Client,
    private readonly intervalMs: number,
  ) {}

  static async start(replicaUrl: string, primaryUrl: string, intervalMs: number): Promise<LagSampler> {
    const replica = new Client({ connectionString: replicaUrl, application_name: 'safepkg-bench-lag' });
    const primary = new Client({ connectionString: primaryUrl, application_name: 'safepkg-bench-lag' });
    await replica.connect();
    await primary.connect();
    const sampler = new LagSampler(replica, primary, intervalMs);
    await sampler.sample();
    sampler.loop = sampler.run();
    return sampler;
  }

  latest(): LagSample | undefined {
    return this.samples[this.samples.length - 1];
  }

  private async sample(): Promise<void> {
    const sentAt = Date.now();
    const { rows } = await this.replica.query<{
      replay_lsn: string | null;
      lag_ms: number | null;
      replayed_commit_ms: number | null;
    }>(
      `SELECT p.replay_lsn, p.lag_ms,
              (EXTRACT(EPOCH FROM pg_last_xact_replay_timestamp()) * 1000)::float8 AS replayed_commit_ms
         FROM (${REPLICA_POLL_SQL}) p`,
    );
    const p = await this.primary.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
    const r = rows[0];
    if (!r?.replay_lsn) throw new Error('the replica is not replaying (pg_last_wal_replay_lsn() is null)');
    const replayLsn = Number(parseLsn(r.replay_lsn));
    const primaryLsn = Number(parseLsn((p.rows[0] as { lsn: string }).lsn));
    this.samples.push({
      sentAt,
      receivedAt: Date.now(),
      replayLsn,
      primaryLsn,
      bytesBehind: Math.max(0, primaryLsn - replayLsn),
      lagMs: r.lag_ms === null ? null : Math.max(0, r.lag_ms),
      lastReplayedCommitAt: r.replayed_commit_ms,
    });
  }

  private async run(): Promise<void> {
    try {
      while (this.running) {
        const last = this.latest();
        await sleep(Math.max(0, (last?.sentAt ?? 0) + this.intervalMs - Date.now()));
        if (this.running) await this.sample();
      }
    } catch (err) {
      this.failed = err instanceof Error ? err : new Error(String(err));
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop?.catch(() => undefined);
    await this.replica.end().catch(() => undefined);
    await this.primary.end().catch(() => undefined);
  }
}

export async function runReplicaBench(o: ReplicaBenchOptions): Promise<ReplicaResult> {
  const { env, primary, log } = o;
  const topology = env.topology;
  if (topology.layout !== 'split' || !topology.api)
    throw new Error('the replicas part needs the split topology (a private primary, 2 or more cores)');
  const placement: ReplicaResult['placement'] = {
    primary: primary.cores,
    // The cores the api would use: the only ones off the primary's on this box.
    replica: topology.api,
    primaryProbe: primary.cores,
    replicaProbe: topology.api,
    // Next to the primary, as in the topology: the replica's cores stay the replica's.
    flusher: topology.flusher,
    redis: topology.redis,
    benchProcess: topology.loadGenerator,
  };
  const primaryDb = await resetBenchDatabase(env.template);
  // Both servers start the measurement with the packages table and its indexes in shared
  // buffers: the replica's base backup would otherwise start it cold against a warm primary.
  const prewarm = `SELECT sum(pg_prewarm(c.oid)) FROM pg_class c
     WHERE c.relname = 'packages' OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = 'packages'::regclass)`;
  const once = async (url: string, sql: string) => {
    const c = new Client({ connectionString: url });
    await c.connect();
    try {
      await c.query(sql);
    } finally {
      await c.end();
    }
  };
  await once(primaryDb, 'CREATE EXTENSION IF NOT EXISTS pg_prewarm');
  log(`replicas: base backup of the primary, replica on core ${placement.replica?.join(',')}`);
  const startedReplica = Date.now();
  const replica = await startBenchReplica(primary, placement.replica);
  const replicaStartMs = Date.now() - startedReplica;
  const replicaDb = databaseUrl(replica.url, BENCH_DATABASE);
  const redis = new Redis(env.redisUrl);
  const probes: LookupProbe[] = [];
  let sampler: LagSampler | null = null;
  try {
    await Promise.all([once(primaryDb, prewarm), once(replicaDb, prewarm)]);
    const probe = async (url: string, cores: number[] | null) => {
      const p = await LookupProbe.start({
        databaseUrl: url,
        catalogue: env.catalogue,
        concurrency: PROBE_CONCURRENCY,
        keysPerLookup: KEYS_PER_LOOKUP,
        cores,
      });
      probes.push(p);
      return p;
    };
    const stopAll = async () => {
      await Promise.all(probes.splice(0).map((p) => p.stop()));
    };
    /** Probes on the given servers at once, for probeS after a warm-up. */
    const window = async (targets: { url: string; cores: number[] | null }[]): Promise<ProbeStat[]> => {
      const ps = await Promise.all(targets.map((t) => probe(t.url, t.cores)));
      await sleep(WARMUP_S * 1000);
      const from = Date.now();
      await sleep(o.probeS * 1000);
      // The probe reports every 200 ms: wait for the report that covers the window's end.
      const to = Date.now();
      await sleep(300);
      const out = ps.map((p) => stat(p, from, to));
      await stopAll();
      return out;
    };
    const onPrimary = { url: primaryDb, cores: placement.primaryProbe };
    const onReplica = { url: replicaDb, cores: placement.replicaProbe };

    log(`replicas: lookup probe on the primary alone for ${o.probeS} s`);
    const [primaryAlone] = (await window([onPrimary])) as [ProbeStat];
    log(`replicas: lookup probe on the replica alone for ${o.probeS} s`);
    const [replicaAlone] = (await window([onReplica])) as [ProbeStat];
    log(`replicas: lookup probes on both at once for ${o.probeS} s`);
    const [bothPrimary, bothReplica] = (await window([onPrimary, onReplica])) as [ProbeStat, ProbeStat];
    log(
      `replicas: capacity windows done (lookups/s ${primaryAlone.lookupsPerS}, ${replicaAlone.lookupsPerS}, ${bothPrimary.lookupsPerS} + ${bothReplica.lookupsPerS})`,
    );

    // b) and c): the drain, with both probes and the lag sampler running throughout.
    const catalogue = new Catalogue({ ...env.catalogue, knownApps: 1, hotApps: 1 });
    log(`replicas: filling the buffer with ${o.drainEntries} entries`);
    const { fillMs } = await fillBuffer(
      env,
      redis,
      catalogue,
      o.drainEntries,
      env.countReports,
      new Random(env.seed + 31),
    );
    const pp = await probe(onPrimary.url, onPrimary.cores);
    const rp = await probe(onReplica.url, onReplica.cores);
    sampler = await LagSampler.start(
      databaseUrl(replica.url, 'postgres'),
      databaseUrl(primary.url, 'postgres'),
      o.lagSampleMs,
    );
    const affinity = {
      primaryPostmaster: allowedCores(primary.pid),
      replicaPostmaster: allowedCores(replica.pid),
      primaryProbe: allowedCores(pp.pid),
      replicaProbe: allowedCores(rp.pid),
      benchProcess: allowedCores(process.pid),
    };
    await sleep(WARMUP_S * 1000);
    const baselineFrom = Date.now();
    log(`replicas: both probes without a drain for ${o.probeS} s`);
    await sleep(o.probeS * 1000);
    const baselineTo = Date.now();
    log(`replicas: one flusher (core ${placement.flusher?.join(',')}) drains ${o.drainEntries} entries`);
    const flushed = await flushUntilEmpty(env, redis, primaryDb, o.drainEntries, placement.flusher);
    // Everything the drain wrote is at or before the primary's position now.
    const { lsn: afterDrainLsn } = await (async () => {
      const c = new Client({ connectionString: databaseUrl(primary.url, 'postgres') });
      await c.connect();
      try {
        return (await c.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0] as {
          lsn: string;
        };
      } finally {
        await c.end();
      }
    })();
    const target = Number(parseLsn(afterDrainLsn));
    const s = sampler;
    const replayed = await waitFor(
      () => {
        if (s.failed) throw s.failed;
        return s.samples.find((x) => x.replayLsn >= target) ?? null;
      },
      { what: `the replica to replay ${afterDrainLsn}`, timeoutMs: 120_000, intervalMs: 20 },
    );
    // A sample or two more, so the window's last probe report and lag sample are in.
    await sleep(Math.max(300, 2 * o.lagSampleMs));
    await sampler.stop();
    const samples = sampler.samples;
    sampler = null;
    const during = {
      primary: stat(pp, flushed.firstDropAt, flushed.emptyAt),
      replica: stat(rp, flushed.firstDropAt, flushed.emptyAt),
    };
    const baseline = {
      primary: stat(pp, baselineFrom, baselineTo),
      replica: stat(rp, baselineFrom, baselineTo),
    };
    await stopAll();

    // The last commit the replica replayed by the time it had everything the drain wrote.
    const lastCommitAt = replayed.lastReplayedCommitAt;
    const caught = lastCommitAt === null ? null : catchUp(samples, lastCommitAt);
    const drainMs = flushed.emptyAt - flushed.firstDropAt;
    const atLaunch = samples.filter((x) => x.sentAt <= flushed.startedAt).pop();
    const inserted = await insertedSince(env.seedRows, BENCH_DATABASE);
    const ratio = (a: number, b: number) => round(a / b, 2);
    return {
      placement,
      affinity,
      replicaSettings: replica.settings,
      probe: {
        concurrency: PROBE_CONCURRENCY,
        keysPerLookup: KEYS_PER_LOOKUP,
        seconds: o.probeS,
        warmupS: WARMUP_S,
        packages: env.catalogue.knownApps,
      },
      replicaStartMs,
      capacity: {
        primaryAlone,
        replicaAlone,
        both: {
          primary: bothPrimary,
          replica: bothReplica,
          totalLookupsPerS: bothPrimary.lookupsPerS + bothReplica.lookupsPerS,
        },
        replicaOverPrimary: ratio(replicaAlone.lookupsPerS, primaryAlone.lookupsPerS),
        bothOverPrimary: ratio(bothPrimary.lookupsPerS + bothReplica.lookupsPerS, primaryAlone.lookupsPerS),
      },
      drain: {
        entries: o.drainEntries,
        fillMs,
        drainMs,
        rowsPerS: Math.round((o.drainEntries * 1000) / Math.max(1, drainMs)),
        newRows: inserted.rows,
        baseline,
        during,
        ratios: {
          primaryLookups: ratio(during.primary.lookupsPerS, baseline.primary.lookupsPerS),
          replicaLookups: ratio(during.replica.lookupsPerS, baseline.replica.lookupsPerS),
          primaryP99: ratio(during.primary.p99Ms, baseline.primary.p99Ms),
          replicaP99: ratio(during.replica.p99Ms, baseline.replica.p99Ms),
        },
      },
      lag: {
        sampleIntervalMs: o.lagSampleMs,
        baseline: summariseLag(samples, baselineFrom, baselineTo),
        duringDrain: summariseLag(samples, flushed.startedAt, replayed.sentAt),
        afterDrain: {
          primaryLsn: afterDrainLsn,
          walBytes: atLaunch ? target - atLaunch.primaryLsn : null,
        },
        catchUp: caught,
        samples: samples
          .filter((x) => x.sentAt >= baselineFrom)
          .map((x) => [
            x.sentAt - flushed.startedAt,
            x.bytesBehind,
            x.lagMs === null ? null : round(x.lagMs, 1),
          ]),
      },
    };
  } finally {
    await sampler?.stop();
    await Promise.all(probes.map((p) => p.stop()));
    await deletePrefix(redis, env.keyPrefix).catch(() => undefined);
    redis.disconnect();
    await replica.remove();
  }
}
