import { KeySchema, RedisBuffer } from '@safepkg/core';
import {
  bufferPackages,
  contextEnv,
  flushState,
  freePort,
  startApp,
  startPostgresServer,
  startRedisServer,
  useTestContext,
  waitFor,
  type PostgresServer,
  type RedisServer,
  type RunningApp,
} from '@safepkg/testkit';
import { Redis } from 'ioredis';
import { Pool } from 'pg';

const ctx = useTestContext({ bufferPartitions: 4, flushIntervalMs: 200 });
const cleanups: (() => Promise<unknown> | void)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

function redisClient(url: string): Redis {
  const r = new Redis(url, { maxRetriesPerRequest: 1 });
  r.on('error', () => undefined);
  cleanups.push(() => r.disconnect());
  return r;
}

async function drainedBy(pool: Pool, redis: Redis, keys: KeySchema, expected: string[], what: string) {
  await waitFor(
    async () => {
      const s = await flushState(pool, redis, keys, ctx.config.bufferPartitions);
      return s.pending === 0 && expected.every((k) => s.storedKeys.includes(k));
    },
    { timeoutMs: 30_000, intervalMs: 100, what },
  );
  const s = await flushState(pool, redis, keys, ctx.config.bufferPartitions);
  expect(s.dead).toBe(0);
  expect(s.queued).toBe(s.storedKeys.length);
  expect(s.queuedDistinct).toBe(s.storedKeys.length);
}

test('a flusher started while Redis and PostgreSQL are both down stays up, is not ready, and drains once they answer', async () => {
  const pg: PostgresServer = await startPostgresServer();
  cleanups.push(() => pg.remove());
  await pg.stop('fast');
  const redisPort = await freePort();
  const redisUrl = `redis://127.0.0.1:${redisPort}`;
  const keys = new KeySchema(ctx.config.keyPrefix);

  const flusher: RunningApp = await startApp(
    'flusher',
    contextEnv(ctx.config, { DATABASE_URL: pg.url, REDIS_URL: redisUrl, LOG_LEVEL: 'warn' }),
  );
  cleanups.push(() => flusher.kill('SIGTERM'));
  expect((await fetch(`${flusher.url}/readyz`)).status).toBe(503);

  const redisServer: RedisServer = await startRedisServer({ port: redisPort });
  cleanups.push(() => redisServer.stop());
  await pg.start();
  const redis = redisClient(redisUrl);
  const sent = await bufferPackages(new RedisBuffer(redis, keys, 4, 1_000_000), 500, 'latestart');

  const pool = new Pool({ connectionString: pg.url, max: 2 });
  cleanups.push(() => pool.end());
  await drainedBy(pool, redis, keys, sent, 'the flusher started during the outage to drain');
  await waitFor(async () => (await fetch(`${flusher.url}/readyz`)).status === 200, {
    what: 'flusher /readyz',
  });
  // The same process did it: it never exited to be restarted.
  expect(flusher.child.exitCode).toBeNull();
  expect(await flusher.kill('SIGTERM')).toEqual({ code: 0, signal: null });
});

test('Redis restarted empty under a running flusher: the flush scheduler is put back and new entries still drain', async () => {
  const redisServer = await startRedisServer({ appendonly: false });
  cleanups.push(() => redisServer.stop());
  const keys = new KeySchema(ctx.config.keyPrefix);
  const flusher = await startApp(
    'flusher',
    contextEnv(ctx.config, { REDIS_URL: redisServer.url, LOG_LEVEL: 'warn' }),
  );
  cleanups.push(() => flusher.kill('SIGTERM'));

  let redis = redisClient(redisServer.url);
  const first = await bufferPackages(new RedisBuffer(redis, keys, 4, 1_000_000), 100, 'beforewipe');
  await drainedBy(ctx.db.pool, redis, keys, first, 'the first entries to drain');

  // Without AOF a restart comes back empty: the Job Scheduler that ticks the flusher is gone too.
  await redisServer.kill();
  const restarted = await redisServer.restart();
  cleanups.push(() => restarted.stop());
  redis = redisClient(restarted.url);
  expect(await redis.dbsize()).toBe(0);

  const second = await bufferPackages(new RedisBuffer(redis, keys, 4, 1_000_000), 100, 'afterwipe');
  await drainedBy(ctx.db.pool, redis, keys, second, 'entries buffered after the empty restart to drain');
  expect(flusher.child.exitCode).toBeNull();
  expect(await flusher.kill('SIGTERM')).toEqual({ code: 0, signal: null });
});
