import { KeySchema, packageKey, RedisBuffer } from '@safepkg/core';
import {
  contextEnv,
  pkgs,
  startApp,
  startRedisServer,
  useTestContext,
  waitFor,
  type RedisServer,
  type RunningApp,
} from '@safepkg/testkit';
import { Redis } from 'ioredis';
import { auditBuffer, auditStored, setDiff } from '../src/chaos-audit';
import { postCheck } from '../src/chaos-client';

const ctx = useTestContext({ bufferPartitions: 4, flushIntervalMs: 100 });
const servers: RedisServer[] = [];
const clients: Redis[] = [];
const apps: RunningApp[] = [];

afterAll(async () => {
  await Promise.all(apps.map((a) => a.kill('SIGTERM')));
  for (const c of clients) c.disconnect();
  await Promise.all(servers.map((s) => s.stop()));
});

function client(url: string): Redis {
  const c = new Redis(url, { maxRetriesPerRequest: 1 });
  c.on('error', () => undefined);
  clients.push(c);
  return c;
}

// appendfsync everysec: a write is on disk at most ~1 s after it was acknowledged. SIGKILL
// of the process alone loses less (written pages survive in the OS cache); the 1-second
// bound is what a machine crash can take. Waiting past it makes the assertion exact.
const PAST_FSYNC_BOUND_MS = 1200;

test('Redis with AOF everysec, killed with SIGKILL and restarted, keeps what was buffered more than a second before', async () => {
  let redisServer = await startRedisServer({ appendonly: true });
  servers.push(redisServer);
  const env = contextEnv(ctx.config, { REDIS_URL: redisServer.url, LOG_LEVEL: 'warn' });
  const api = await startApp('api', env);
  apps.push(api);

  const sent = pkgs(0, 400, 'durable');
  for (let i = 0; i < sent.length; i += 100) {
    const res = await postCheck(api.url, sent.slice(i, i + 100));
    expect(res.status).toBe(200);
    expect(res.results.every((r) => r.pending)).toBe(true);
  }
  await new Promise((r) => setTimeout(r, PAST_FSYNC_BOUND_MS));
  await redisServer.kill();
  redisServer = await redisServer.restart();
  servers.push(redisServer);

  const redis = client(redisServer.url);
  const replayed = await auditBuffer(redis, ctx.keys, ctx.config.bufferPartitions);
  expect(setDiff(sent.map(packageKey), replayed.pendingKeys)).toEqual({ missing: [], extra: [] });
  expect(replayed.pendingWithoutData).toEqual([]);
  expect(replayed.dataWithoutPending).toEqual([]);

  // The api reconnects by itself (asked through /readyz: a check sent while it is still
  // disconnected would rightly be written to PostgreSQL directly); the packages are still
  // pending, not buffered twice.
  await waitFor(
    async () =>
      ((await (await fetch(`${api.url}/readyz`)).json()) as { checks: { redis: boolean } }).checks.redis,
    { what: 'the api to reconnect to the restarted Redis' },
  );
  const again = await postCheck(api.url, sent.slice(0, 100));
  expect(again).toMatchObject({ status: 200, degraded: false });
  expect(again.results.every((r) => r.pending)).toBe(true);

  apps.push(await startApp('flusher', env));
  await waitFor(async () => (await auditBuffer(redis, ctx.keys, ctx.config.bufferPartitions)).pending === 0, {
    what: 'the replayed buffer to drain',
  });
  const stored = await auditStored(ctx.db.pool);
  expect(setDiff(sent.map(packageKey), stored.stored)).toEqual({ missing: [], extra: [] });
  expect(stored).toMatchObject({
    rows: sent.length,
    queued: sent.length,
    queuedDistinct: sent.length,
    orphans: 0,
  });
});

test('the same kill without AOF loses the buffer (what the setting above protects)', async () => {
  const server = await startRedisServer({ appendonly: false });
  servers.push(server);
  const keys = new KeySchema(ctx.config.keyPrefix);
  const buffer = new RedisBuffer(client(server.url), keys, 4, 1000);
  await buffer.add(pkgs(0, 50, 'volatile').map((p) => ({ key: packageKey(p), payload: { t: Date.now() } })));
  await new Promise((r) => setTimeout(r, PAST_FSYNC_BOUND_MS));
  expect((await auditBuffer(client(server.url), keys, 4)).pending).toBe(50);
  await server.kill();
  const restarted = await server.restart();
  servers.push(restarted);
  expect((await auditBuffer(client(restarted.url), keys, 4)).pending).toBe(0);
});
