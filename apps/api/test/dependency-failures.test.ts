import type { Redis } from 'ioredis';
import type { Pool } from 'pg';
import { pkgs, useTestContext } from '@safepkg/testkit';
import { deadDependencies, serveApp, type TestServer } from './helpers';

const TOKEN = 'dependency-admin-token-0123456789';
const ctx = useTestContext({ adminToken: TOKEN, bufferPartitions: 1 });
const auth = { authorization: `Bearer ${TOKEN}` };

let server: TestServer;
let pgDown: TestServer;
let redisDown: TestServer;
let deadPool: Pool;
let deadRedis: Redis;
let closeDead: () => Promise<void>;
beforeAll(async () => {
  const dead = await deadDependencies();
  closeDead = dead.close;
  deadPool = dead.pool;
  deadRedis = dead.redis;
  server = await serveApp(ctx);
  pgDown = await serveApp(ctx, {}, { pool: deadPool });
  // Scheduling a flush goes through Redis (BullMQ in main.ts); a PING on the dead client stands in for it.
  redisDown = await serveApp(
    ctx,
    {},
    { redis: deadRedis, requestFlush: () => deadRedis.ping().then(() => undefined) },
  );
});
afterAll(async () => {
  await Promise.all([server.close(), pgDown.close(), redisDown.close()]);
  await closeDead();
});

type Res = Awaited<ReturnType<TestServer['request']>>;

/** 503 unavailable with Retry-After, and no internals (addresses, driver messages) in the body. */
function expectUnavailable(res: Res): void {
  expect([res.status, res.headers.get('retry-after')]).toEqual([503, String(ctx.config.retryAfterS)]);
  expect(res.body).toEqual({ error: { code: 'unavailable', message: expect.any(String), details: [] } });
  expect(JSON.stringify(res.body)).not.toMatch(/ECONNREFUSED|127\.0\.0\.1|stream|writeable|at \//i);
}

const url = (p: { name: string; versionCode: number; signature: string }) =>
  `/v1/packages/${p.name}/${p.versionCode}/${p.signature}`;

describe('GET one package answers 404 only when both PostgreSQL and Redis answered', () => {
  test('PostgreSQL down: a package not pending is unknown (503), a pending one is answered degraded', async () => {
    const [never, pending] = pkgs(0, 2, 'getpgdown');
    expectUnavailable(await pgDown.request('GET', url(never!)));
    expect((await server.request('POST', '/v1/packages/check', { packages: [pending] })).status).toBe(200);
    const res = await pgDown.request('GET', url(pending!));
    expect([res.status, res.body]).toEqual([
      200,
      expect.objectContaining({ pending: true, known: false, degraded: true }),
    ]);
  });

  test('Redis down: a stored package is answered degraded, one with no row is unknown (503: it may be pending)', async () => {
    const [stored, absent] = pkgs(0, 2, 'getredisdown');
    await ctx.db.pool.query(
      'INSERT INTO packages (name, version_code, signature, first_seen_at) VALUES ($1, $2, $3, now())',
      [stored!.name, stored!.versionCode, stored!.signature],
    );
    const res = await redisDown.request('GET', url(stored!));
    expect([res.status, res.body]).toEqual([200, expect.objectContaining({ known: true, degraded: true })]);
    expectUnavailable(await redisDown.request('GET', url(absent!)));
  });

  test('both answered and neither knows it: 404; the pending check failing in Redis: 503, not 500', async () => {
    const [absent] = pkgs(0, 1, 'getboth');
    const notFound = await server.request('GET', url(absent!));
    expect([notFound.status, notFound.body]).toEqual([
      404,
      expect.objectContaining({ error: expect.objectContaining({ code: 'not_found' }) }),
    ]);
    // The partition's pending zset replaced by a string: the cache read succeeds, ZSCORE fails (WRONGTYPE).
    const pendingKey = ctx.keys.partition(0).pending;
    const saved = await ctx.redis.dumpBuffer(pendingKey);
    await ctx.redis.set(pendingKey, 'not a zset');
    try {
      expectUnavailable(await server.request('GET', url(absent!)));
    } finally {
      await ctx.redis.del(pendingKey);
      if (saved) await ctx.redis.restore(pendingKey, 0, saved);
    }
  });
});

describe('a dependency failure on an admin route is 503 unavailable, never 500', () => {
  test('Redis down: buffer, dead letters, redrive and flush', async () => {
    expectUnavailable(await redisDown.request('GET', '/v1/admin/buffer', undefined, auth));
    expectUnavailable(await redisDown.request('GET', '/v1/admin/dead-letters', undefined, auth));
    expectUnavailable(await redisDown.request('POST', '/v1/admin/dead-letters/redrive', {}, auth));
    expectUnavailable(await redisDown.request('POST', '/v1/admin/flush', undefined, auth));
  });

  test('PostgreSQL down: analysis claims and evaluations', async () => {
    const [p] = pkgs(0, 1, 'adminpgdown');
    expectUnavailable(await pgDown.request('POST', '/v1/admin/analysis/claim', { limit: 5 }, auth));
    const body = { evaluations: [{ ...p, verdict: 'safe', source: 'model', threatIndex: 0.1 }] };
    expectUnavailable(await pgDown.request('POST', '/v1/admin/evaluations', body, auth));
  });
});
