import {
  createLogger,
  PackageStore,
  RedisBuffer,
  ReportBuffer,
  type Config,
  type NewPackage,
  type ReportSet,
} from '@safepkg/core';
import { startTcpProxy, type TcpProxy, type TestContext } from '@safepkg/testkit';
import { Pool } from 'pg';
import { Backoff } from '../src/backoff';
import { Flusher, type FlusherDeps } from '../src/flusher';
import { FlusherMetrics } from '../src/metrics';
import { absorbClientErrors } from '../src/pool-errors';

/** The real store, counting its batch writes (each one PostgreSQL transaction). */
export class CountingStore extends PackageStore {
  inserts = 0;
  override async flushRound(
    rows: readonly NewPackage[],
    reports: readonly ReportSet[],
    beforeCommit?: () => Promise<void>,
  ) {
    if (rows.length > 0 || reports.length > 0) this.inserts++;
    return super.flushRound(rows, reports, beforeCommit);
  }
}

export interface TestFlusher {
  flusher: Flusher;
  buffer: RedisBuffer;
  reports: ReportBuffer;
  store: CountingStore;
  metrics: FlusherMetrics;
  config: Config;
}

/** A Flusher on the test context's real PostgreSQL and Redis (or on `pool` when given). */
export function testFlusher(
  ctx: TestContext,
  options: { config?: Partial<Config>; pool?: Pool; deps?: Partial<FlusherDeps> } = {},
): TestFlusher {
  const config = { ...ctx.config, ...options.config };
  const buffer = new RedisBuffer(ctx.redis, ctx.keys, config.bufferPartitions, config.maxBufferDepth);
  const reports = new ReportBuffer(ctx.redis, ctx.keys, config.bufferPartitions);
  const store = new CountingStore(options.pool ?? ctx.db.pool);
  const metrics = new FlusherMetrics({ defaultMetrics: false });
  const flusher = new Flusher({
    config,
    redis: ctx.redis,
    keys: ctx.keys,
    buffer,
    reports,
    store,
    metrics,
    logger: createLogger({ logLevel: 'silent' }, 'flusher-test'),
    ...options.deps,
  });
  return { flusher, buffer, reports, store, metrics, config };
}

/** A backoff whose clock jumps an hour ahead at each reading: a test's retry tick is never skipped. */
export function backoffWithoutWaits(config: Pick<Config, 'flushIntervalMs' | 'flushBackoffMaxMs'>): Backoff {
  let now = 0;
  return new Backoff(config.flushIntervalMs, config.flushBackoffMaxMs, Math.random, () => (now += 3_600_000));
}

/** A counter's current value (prom-client keeps it per label set; these have none). */
export async function counterValue(
  counter: FlusherMetrics['leaseLosses'],
  labels: Record<string, string> = {},
): Promise<number> {
  const { values } = await counter.get();
  const match = values.find((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want));
  return match?.value ?? 0;
}

/** Counts every statement sent on the pool's connections (COPY included), to bound round trips. */
export function countStatements(pool: Pool): { readonly count: number } {
  const counter = { count: 0 };
  pool.on('connect', (client) => {
    const target = client as unknown as { query: (...args: unknown[]) => unknown };
    const query = target.query.bind(client);
    target.query = (...args: unknown[]) => {
      counter.count++;
      return query(...args);
    };
  });
  return counter;
}

/**
 * A pool that reaches the test database through a TCP proxy the test can block, so that
 * PostgreSQL "goes away" for this flusher only. Errors of its connections are absorbed as the
 * flusher's main does, so a cut mid-flush cannot crash the test process.
 */
export async function proxiedPool(
  ctx: TestContext,
): Promise<{ proxy: TcpProxy; pool: Pool; close(): Promise<void> }> {
  const direct = new URL(ctx.db.url);
  const proxy = await startTcpProxy(Number(direct.port || 5432));
  direct.host = `127.0.0.1:${proxy.port}`;
  const pool = new Pool({ connectionString: direct.toString(), max: 2, connectionTimeoutMillis: 2000 });
  absorbClientErrors(pool, () => undefined);
  return {
    proxy,
    pool,
    async close() {
      await pool.end().catch(() => undefined);
      await proxy.close();
    },
  };
}
