import { parseArgs } from 'node:util';
import { configDefaults, KeySchema, type Config } from '@safepkg/core';
import {
  contextEnv,
  reportKeysLeft,
  startApp,
  startPostgresServer,
  startRedisServer,
  waitFor,
  type PostgresServer,
  type RedisServer,
  type RunningApp,
} from '@safepkg/testkit';
import { Redis } from 'ioredis';
import { Pool } from 'pg';
import { auditBuffer, auditReports, auditStored, setDiff, type ReportAudit } from './chaos-audit';
import { ChaosLoad, type LoadStats } from './chaos-load';

export interface ChaosOptions {
  kills: number;
  seconds: number;
  /** Concurrent check clients. */
  clients?: number;
  /** Progress lines (the summary is returned, not logged). */
  log?: (line: string) => void;
  /**
   * The harness's own control: Redis without AOF, killed under load with no wait. The
   * run must then report lost > 0, which shows the accounting can see a loss.
   */
  redisWithoutAof?: boolean;
}

export interface ChaosSummary {
  kills: number;
  apiKills: number;
  flusherKills: number;
  postgresRestarts: number;
  redisRestarts: number;
  /** Process starts that failed (a flusher refuses to start while PostgreSQL or Redis is down) and were retried. */
  failedStarts: number;
  /** Distinct packages answered 200. */
  sent: number;
  /** Rows in packages. */
  stored: number;
  /** Sent but not stored. */
  lost: number;
  /** Rows queued for analysis more than once, plus stored rows beyond the distinct set sent. */
  duplicated: number;
  /** Stored packages never queued for analysis. */
  unqueued: number;
  /** Buffer entries left after the drain (pending members, or data with no pending member). */
  bufferLeft: number;
  /** Reports answered 200 against packages.reports, per package (see auditReports). */
  reports: ReportAudit;
  /** Report keys (live deltas, in-flight sets) left in Redis after the drain. */
  reportKeysLeft: number;
  load: LoadStats;
  seconds: number;
}

const API_PODS = 2;

/** `kills=… sent=… stored=… lost=… duplicated=…` and the rest, on one line. */
export function summaryLine(s: ChaosSummary): string {
  const refused = Object.entries(s.load.refused)
    .map(([code, n]) => `${code}:${n}`)
    .join(',');
  return (
    `kills=${s.kills} sent=${s.sent} stored=${s.stored} lost=${s.lost} duplicated=${s.duplicated} ` +
    `unqueued=${s.unqueued} buffer_left=${s.bufferLeft} reports_sent=${s.reports.sent} ` +
    `reports_stored=${s.reports.stored} reports_lost=${s.reports.lost} reports_over=${s.reports.over} ` +
    `reports_ambiguous=${s.reports.ambiguous} reports_over_ambiguous=${s.reports.overWithinAmbiguous} ` +
    `report_keys_left=${s.reportKeysLeft} api_kills=${s.apiKills} flusher_kills=${s.flusherKills} ` +
    `pg_restarts=${s.postgresRestarts} redis_restarts=${s.redisRestarts} failed_starts=${s.failedStarts} requests=${s.load.accepted} ` +
    `retries=${s.load.retries} degraded=${s.load.degraded} refused=${refused || 'none'} abandoned=${s.load.abandoned} ` +
    `seconds=${s.seconds}`
  );
}

export function chaosFailed(s: ChaosSummary): boolean {
  return (
    s.lost > 0 ||
    s.duplicated > 0 ||
    s.unqueued > 0 ||
    s.bufferLeft > 0 ||
    s.sent === 0 ||
    s.reports.lost > 0 ||
    s.reports.over > 0 ||
    s.reportKeysLeft > 0
  );
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The chaos run, all on 127.0.0.1 and all its own: a redis-server with AOF, a private
 * PostgreSQL, two api processes and one flusher. Check load with many duplicates runs for
 * `seconds` while api and flusher processes are killed with SIGKILL at random moments and
 * restarted, PostgreSQL is crashed and restarted once and Redis is killed (SIGKILL) and
 * restarted from its AOF once. Then everything drains and SQL decides: the distinct set
 * answered 200 must equal the stored set, each package queued once, the buffer empty.
 */
export async function runChaos(options: ChaosOptions): Promise<ChaosSummary> {
  const log = options.log ?? (() => undefined);
  const began = Date.now();
  let redisServer: RedisServer | undefined;
  let pg: PostgresServer | undefined;
  const apis: (RunningApp | null)[] = new Array<RunningApp | null>(API_PODS).fill(null);
  const everStarted: RunningApp[] = [];
  let redis: Redis | undefined;
  let pool: Pool | undefined;
  // Math.random: each run kills at different moments; the load's content stays deterministic.
  const random = Math.random;

  try {
    [redisServer, pg] = await Promise.all([
      startRedisServer({ appendonly: !options.redisWithoutAof }),
      startPostgresServer(),
    ]);
    const config: Config = {
      ...configDefaults(),
      databaseUrl: pg.url,
      redisUrl: redisServer.url,
      keyPrefix: 'chaos',
      bufferPartitions: 8,
      flushIntervalMs: 100,
      flushBatchSize: 2000,
      // Short, so the partitions a killed flusher held are free again soon.
      lockTtlMs: 2000,
      rateLimitPoints: 0,
    };
    const env = contextEnv(config, { LOG_LEVEL: 'warn', FLUSH_BACKOFF_MAX_MS: '1000' });
    log(
      `redis-server :${redisServer.port} (AOF everysec), postgres :${pg.port} (started in ${pg.startTimesMs[0]} ms)`,
    );

    // A restart while PostgreSQL or Redis is down may fail (the flusher refuses to start
    // without both): try again until it comes up.
    let failedStarts = 0;
    const startWithRetry = async (app: 'api' | 'flusher'): Promise<RunningApp> => {
      for (let attempt = 1; ; attempt++) {
        try {
          const running = await startApp(app, env);
          everStarted.push(running);
          return running;
        } catch (err) {
          failedStarts++;
          if (attempt >= 60) throw err;
          await sleep(250);
        }
      }
    };
    for (let i = 0; i < API_PODS; i++) apis[i] = await startWithRetry('api');
    let flusher = await startWithRetry('flusher');
    let flusherKills = 0;
    // Serialised: the kill loop and the outage task may both cycle the flusher.
    let flusherCycle = Promise.resolve();
    const cycleFlusher = () =>
      (flusherCycle = flusherCycle.then(async () => {
        await flusher.kill('SIGKILL');
        flusherKills++;
        flusher = await startWithRetry('flusher');
      }));

    const load = new ChaosLoad(
      () => {
        const live = apis.filter((a): a is RunningApp => a !== null);
        return live.length ? (live[Math.floor(random() * live.length)] as RunningApp).url : null;
      },
      // The distinct set grows with the run, so new packages keep arriving until the end.
      {
        clients: options.clients ?? 4,
        perRequest: 50,
        distinct: Math.max(40_000, options.seconds * 2000),
        namespace: 'chaos',
      },
    );
    load.start();

    const duration = options.seconds * 1000;
    const outages = (async () => {
      await sleep(duration * 0.3);
      log('postgres: crash (pg_ctl stop -m immediate)');
      await (pg as PostgresServer).stop('immediate');
      await sleep(1500);
      await (pg as PostgresServer).start();
      log('postgres: restarted');
      await sleep(Math.max(0, began + duration * 0.65 - Date.now()));
      // Inside the AOF bound: no write accepted in the last second is at risk.
      if (!options.redisWithoutAof) {
        await load.pause();
        while (Date.now() - load.lastAcceptedAt <= 1100) await sleep(50);
      }
      log('redis: SIGKILL');
      await (redisServer as RedisServer).kill();
      load.resume();
      await sleep(1000);
      redisServer = await (redisServer as RedisServer).restart();
      log(`redis: restarted${options.redisWithoutAof ? ' empty' : ' from its AOF'}`);
      // An empty Redis lost the flusher's job scheduler too, which the flusher creates at start.
      if (options.redisWithoutAof) await cycleFlusher();
    })();

    let apiKills = 0;
    for (let k = 0; k < options.kills; k++) {
      const at = began + ((k + random()) * duration) / options.kills;
      await sleep(Math.max(0, at - Date.now()));
      if (random() < 0.35) {
        await cycleFlusher();
      } else {
        const i = Math.floor(random() * API_PODS);
        const victim = apis[i];
        apis[i] = null;
        await victim?.kill('SIGKILL');
        apiKills++;
        apis[i] = await startWithRetry('api');
      }
    }
    await outages;
    await sleep(Math.max(0, began + duration - Date.now()));
    log(`load: stopping after ${((Date.now() - began) / 1000).toFixed(1)} s`);
    await load.stop(Date.now() + 60_000);

    redis = new Redis(redisServer.url, { maxRetriesPerRequest: 1 });
    redis.on('error', () => undefined);
    pool = new Pool({ connectionString: pg.url, max: 2 });
    pool.on('error', () => undefined);
    const keys = new KeySchema(config.keyPrefix);
    await waitFor(
      async () =>
        (await auditBuffer(redis as Redis, keys, config.bufferPartitions)).pending === 0 &&
        (await reportKeysLeft(redis as Redis, keys, config.bufferPartitions)) === 0,
      {
        timeoutMs: 120_000,
        intervalMs: 250,
        what: 'the buffer and the report deltas to drain',
      },
    );
    const buffer = await auditBuffer(redis, keys, config.bufferPartitions);
    const stored = await auditStored(pool);
    const diff = setDiff(load.sent, stored.stored);
    const reports = await auditReports(pool, load.reports, load.ambiguous);
    if (diff.missing.length > 0) log(`lost, e.g.: ${diff.missing.slice(0, 5).join(' ')}`);
    return {
      kills: apiKills + flusherKills,
      apiKills,
      flusherKills,
      postgresRestarts: 1,
      redisRestarts: 1,
      failedStarts,
      sent: load.sent.size,
      stored: stored.rows,
      lost: diff.missing.length,
      // Packages a request carried before its client gave up may be stored without being
      // "sent"; with no abandoned request every stored row must have been sent.
      duplicated:
        stored.queued - stored.queuedDistinct + (load.stats.abandoned === 0 ? diff.extra.length : 0),
      unqueued: stored.rows - stored.queuedDistinct + stored.orphans,
      bufferLeft: buffer.pending + buffer.dataWithoutPending.length,
      reports,
      reportKeysLeft: await reportKeysLeft(redis, keys, config.bufferPartitions),
      load: load.stats,
      seconds: Math.round((Date.now() - began) / 1000),
    };
  } finally {
    await Promise.all(everStarted.map((a) => a.kill('SIGKILL')));
    redis?.disconnect();
    await pool?.end().catch(() => undefined);
    await redisServer?.stop();
    await pg?.remove();
  }
}

async function cli(): Promise<void> {
  const { values } = parseArgs({
    options: {
      kills: { type: 'string', default: '100' },
      seconds: { type: 'string', default: '120' },
      clients: { type: 'string' },
    },
  });
  const kills = Number(values.kills);
  const seconds = Number(values.seconds);
  if (!Number.isInteger(kills) || kills < 0 || !(seconds > 0) || seconds > 3600) {
    console.error('usage: npm run chaos -- --kills <n ≥ 0> --seconds <1 … 3600> [--clients <n>]');
    process.exit(2);
  }
  const summary = await runChaos({
    kills,
    seconds,
    clients: values.clients ? Number(values.clients) : undefined,
    log: (line) => console.error(`chaos: ${line}`),
  });
  console.log(summaryLine(summary));
  process.exit(chaosFailed(summary) ? 1 : 0);
}

if (require.main === module) {
  cli().catch((err: unknown) => {
    console.error(`chaos: ${err instanceof Error ? err.stack : String(err)}`);
    process.exit(1);
  });
}
