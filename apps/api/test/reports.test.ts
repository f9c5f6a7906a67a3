import { Redis } from 'ioredis';
import {
  applyReportSets,
  KeySchema,
  packageKey,
  partitionOf,
  waitUntilReady,
  PackageStore,
  ReportBuffer,
  type PackageRef,
} from '@safepkg/core';
import {
  freePort,
  pkgs,
  reportKeysLeft,
  startRedisServer,
  startTcpProxy,
  storedReports,
  useTestContext,
  waitFor,
} from '@safepkg/testkit';
import { createApiRedis } from '../src/redis';
import { deadDependencies, serveApp, type TestServer } from './helpers';

const TOKEN = 'reports-admin-token-0123456789';
const PARTITIONS = 4;
const ctx = useTestContext({ adminToken: TOKEN, bufferPartitions: PARTITIONS });
const auth = { authorization: `Bearer ${TOKEN}` };

let server: TestServer;
beforeAll(async () => {
  server = await serveApp(ctx);
});
afterAll(() => server.close());

const reports = () => new ReportBuffer(ctx.redis, ctx.keys, PARTITIONS);

/** Every buffered delta of every partition, as the flusher would take it: packageKey → count. */
async function buffered(): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (let p = 0; p < PARTITIONS; p++) {
    const fields = await ctx.redis.hgetall(ctx.keys.partition(p).reports);
    for (const [f, v] of Object.entries(fields)) if (f.startsWith('n:')) out.set(f.slice(2), Number(v));
  }
  return out;
}

const check = (packages: readonly PackageRef[], s = server) =>
  s.request('POST', '/v1/packages/check', { packages });
const detailUrl = (r: PackageRef) => `/v1/admin/packages/${r.name}/${r.versionCode}/${r.signature}`;

test('each check answered 200 counts each of its packages once, known or not, duplicates once', async () => {
  const [stored, fresh] = pkgs(0, 2, 'count') as [PackageRef, PackageRef];
  await new PackageStore(ctx.db.pool).insertBatch([{ ref: stored, firstSeenAt: new Date(1_000) }]);
  expect((await check([stored, fresh, stored, fresh])).status).toBe(200);
  expect((await check([fresh])).status).toBe(200);
  const b = await buffered();
  expect(b.get(packageKey(stored))).toBe(1);
  expect(b.get(packageKey(fresh))).toBe(2);
});

test('a check answered 503 buffer_full counts nothing, not even its known packages', async () => {
  const full = await serveApp(ctx, { maxBufferDepth: 1, keyPrefix: `${ctx.config.keyPrefix}full` });
  try {
    const [known] = pkgs(0, 1, 'fullknown') as [PackageRef];
    await new PackageStore(ctx.db.pool).insertBatch([{ ref: known, firstSeenAt: new Date(1_000) }]);
    const res = await check([known, ...pkgs(0, 8, 'fullnew')], full);
    expect(res.status).toBe(503);
    expect((res.body as { error: { code: string } }).error.code).toBe('buffer_full');
    const keys = new KeySchema(`${ctx.config.keyPrefix}full`);
    expect(await reportKeysLeft(ctx.redis, keys, PARTITIONS)).toBe(0);
  } finally {
    await full.close();
  }
});

test('with Redis down the reports of a check answered 200 (degraded) go straight to PostgreSQL', async () => {
  const deadRedis = new Redis({
    port: await freePort(),
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  const down = await serveApp(ctx, {}, { redis: deadRedis });
  try {
    const [known, fresh] = pkgs(0, 2, 'redisdown') as [PackageRef, PackageRef];
    await new PackageStore(ctx.db.pool).insertBatch([{ ref: known, firstSeenAt: new Date(1_000) }]);
    const res = await check([known, fresh, fresh], down);
    expect(res.status).toBe(200);
    expect((res.body as { degraded: boolean }).degraded).toBe(true);
    const stored = await storedReports(ctx.db.pool);
    expect(stored.get(packageKey(known))?.reports).toBe(1);
    expect(stored.get(packageKey(fresh))?.reports).toBe(1);
  } finally {
    await down.close();
    deadRedis.disconnect();
  }
});

test('WRITE_MODE=direct counts in PostgreSQL on the request path, cache hits included, and leaves Redis nothing', async () => {
  const prefix = `${ctx.config.keyPrefix}direct`;
  const direct = await serveApp(ctx, { writeMode: 'direct', keyPrefix: prefix });
  try {
    const [known, fresh] = pkgs(0, 2, 'directmode') as [PackageRef, PackageRef];
    await new PackageStore(ctx.db.pool).insertBatch([{ ref: known, firstSeenAt: new Date(1_000) }]);
    expect((await check([known, fresh, fresh], direct)).status).toBe(200);
    // Both are cached now: the second check is a full cache hit, which a buffered api counts by its read.
    const second = await check([known, fresh], direct);
    expect(second.status).toBe(200);
    expect((second.body as { results: { known: boolean }[] }).results.map((r) => r.known)).toEqual([
      true,
      true,
    ]);
    const stored = await storedReports(ctx.db.pool);
    expect(stored.get(packageKey(known))?.reports).toBe(2);
    expect(stored.get(packageKey(fresh))?.reports).toBe(2);
    expect(await reportKeysLeft(ctx.redis, new KeySchema(prefix), PARTITIONS)).toBe(0);
  } finally {
    await direct.close();
  }
});

test('GET /v1/admin/packages/…: stored plus buffered reports, last seen, status, history newest first, analysis state', async () => {
  const [ref, other] = pkgs(0, 2, 'detail') as [PackageRef, PackageRef];
  // Stored with 5 reports applied by a flush, then 2 more checks still buffered.
  await new PackageStore(ctx.db.pool).insertBatch([{ ref, firstSeenAt: new Date('2026-01-01T00:00:00Z') }]);
  await applyReportSets(ctx.db.pool, [
    {
      partition: 0,
      epoch: 'detail',
      tag: '1',
      flushId: 1,
      deltas: [{ key: packageKey(ref), count: 5, lastSeenAt: Date.parse('2026-01-02T00:00:00Z') }],
    },
  ]);
  let res = await server.request('GET', detailUrl(ref), undefined, auth);
  expect(res.body).toMatchObject({
    known: true,
    pending: false,
    reports: 5,
    reportsBuffered: 0,
    firstSeenAt: '2026-01-01T00:00:00.000Z',
    lastSeenAt: '2026-01-02T00:00:00.000Z',
    status: 'unknown',
    evaluations: [],
    analysis: { queued: true, claimedUntil: null, attempts: 0 },
  });
  await check([ref]);
  await check([ref]);
  for (const [verdict, threatIndex] of [
    ['suspicious', 0.5],
    ['malicious', 0.9],
  ] as const) {
    const ev = await server.request(
      'POST',
      '/v1/admin/evaluations',
      { evaluations: [{ ...ref, verdict, source: 'manual', threatIndex }] },
      { ...auth, 'x-actor': 'alice' },
    );
    expect(ev.status).toBe(200);
  }
  res = await server.request('GET', detailUrl(ref), undefined, auth);
  expect(res.status).toBe(200);
  const body = res.body as { lastSeenAt: string; evaluations: { verdict: string }[] };
  expect(res.body).toMatchObject({
    reports: 7,
    reportsBuffered: 2,
    status: 'malicious',
    threatIndex: expect.closeTo(0.9, 5),
    source: 'manual',
    evaluationsTotal: 2,
    analysis: { queued: false },
  });
  expect(body.evaluations.map((e) => e.verdict)).toEqual(['malicious', 'suspicious']);
  expect(Date.parse(body.lastSeenAt)).toBeGreaterThan(Date.parse('2026-01-02T00:00:00Z'));

  // Only buffered (checked, not flushed yet): found, counted, not known.
  await check([other]);
  expect((await server.request('GET', detailUrl(other), undefined, auth)).body).toMatchObject({
    known: false,
    pending: true,
    reports: 1,
    reportsBuffered: 1,
    firstSeenAt: null,
  });
  expect((await reports().pendingFor(packageKey(other))).count).toBe(1);

  const [never] = pkgs(0, 1, 'detailnever') as [PackageRef];
  const missing = await server.request('GET', detailUrl(never), undefined, auth);
  expect(missing.status).toBe(404);
  expect((missing.body as { error: { code: string } }).error.code).toBe('not_found');
  expect((await server.request('GET', detailUrl(ref))).status).toBe(401);
});

test('GET /v1/admin/buffer shows the report deltas still in Redis, per partition and in total', async () => {
  const before = (await server.request('GET', '/v1/admin/buffer', undefined, auth)).body as {
    reportDeltas: number;
  };
  const batch = pkgs(0, 5, 'bufferstats');
  expect((await check([...batch, ...batch.slice(0, 2)])).status).toBe(200);
  const res = await server.request('GET', '/v1/admin/buffer', undefined, auth);
  expect(res.status).toBe(200);
  const body = res.body as {
    reportDeltas: number;
    oldestReportDeltaAgeMs: number | null;
    partitions: { partition: number; reportDeltas: number }[];
  };
  // Duplicates within one request count once.
  expect(body.reportDeltas).toBe(before.reportDeltas + 5);
  const total = [...(await buffered()).values()].reduce((a, n) => a + n, 0);
  expect(body.reportDeltas).toBe(total);
  expect(body.partitions.reduce((a, p) => a + p.reportDeltas, 0)).toBe(total);
  expect(body.oldestReportDeltaAgeMs).toEqual(expect.any(Number));
});

/** Calls `onSend` with the name of every command the real client writes (it still writes them). */
function watchCommands(client: Redis, onSend: (name: string) => void): void {
  const send = client.sendCommand.bind(client);
  client.sendCommand = (command, stream) => {
    onSend(command.name);
    return send(command, stream);
  };
}

/** An api Redis client as main.ts builds it, to the test Redis, recording what the app sends. */
async function recordedClient(): Promise<{ client: Redis; sent: string[] }> {
  const client = createApiRedis(ctx.config) as Redis; // a URL: never a Cluster
  await waitUntilReady(client, 5_000);
  const sent: string[] = [];
  watchCommands(client, (name) => sent.push(name));
  return { client, sent };
}

test('a check whose packages are all cached is counted by its cache read: one Redis command, no separate count', async () => {
  const { client, sent } = await recordedClient();
  const app = await serveApp(ctx, {}, { redis: client });
  try {
    const known = pkgs(0, 3, 'onetrip') as PackageRef[];
    await new PackageStore(ctx.db.pool).insertBatch(
      known.map((ref) => ({ ref, firstSeenAt: new Date(1_000) })),
    );
    // The first check misses the cache: read, fill, then the count on its own.
    expect((await check(known, app)).status).toBe(200);
    sent.length = 0;
    expect((await check([...known, known[0] as PackageRef], app)).status).toBe(200);
    expect(sent).toEqual(['evalsha']);
    const b = await buffered();
    for (const ref of known) expect(b.get(packageKey(ref))).toBe(2);
  } finally {
    await app.close();
    client.disconnect();
  }
});

test('while most checks miss the cache they read plainly (a counting read would not count them), and count on read again once full hits return', async () => {
  const { client, sent } = await recordedClient();
  const app = await serveApp(ctx, {}, { redis: client });
  try {
    const [known] = pkgs(0, 1, 'adaptive') as [PackageRef];
    await new PackageStore(ctx.db.pool).insertBatch([{ ref: known, firstSeenAt: new Date(1_000) }]);
    // Each with a package never seen before: a miss every time.
    for (const fresh of pkgs(0, 40, 'adaptivenew'))
      expect((await check([known, fresh], app)).status).toBe(200);
    sent.length = 0;
    expect((await check([known], app)).status).toBe(200);
    // A full hit, read plainly and counted on its own.
    expect(sent).toEqual(['mget', 'evalsha']);
    for (let i = 0; i < 30; i++) expect((await check([known], app)).status).toBe(200);
    sent.length = 0;
    expect((await check([known], app)).status).toBe(200);
    expect(sent).toEqual(['evalsha']);
    // Counted once per check whichever way: 40 + 1 + 30 + 1.
    expect((await buffered()).get(packageKey(known))).toBe(72);
  } finally {
    await app.close();
    client.disconnect();
  }
});

/** Wakes a stopped redis-server, if it still exists, so its directory can be removed. */
function resume(pid: number): void {
  try {
    process.kill(pid, 'SIGCONT');
  } catch {
    // already gone
  }
}

/** An api Redis client exactly as main.ts builds it, to `url`, and a stored package cached by one check. */
async function apiOn(url: string, name: string) {
  const client = createApiRedis({ ...ctx.config, redisUrl: url });
  client.on('error', () => undefined);
  await waitUntilReady(client, 5_000);
  const app = await serveApp(ctx, {}, { redis: client });
  const [ref] = pkgs(0, 1, name) as [PackageRef];
  await new PackageStore(ctx.db.pool).insertBatch([{ ref, firstSeenAt: new Date(1_000) }]);
  const key = packageKey(ref);
  const hash = ctx.keys.partition(partitionOf(key, PARTITIONS)).reports;
  const storedNow = async () => (await storedReports(ctx.db.pool)).get(key)?.reports as number;
  const storedBefore = await storedNow();
  const direct = new Redis(url);
  return {
    client,
    app,
    ref,
    /** Reports counted in Redis for the package. */
    inRedis: async () => Number(await direct.hget(hash, `n:${key}`)),
    /** Reports counted straight into PostgreSQL since the start. */
    inPostgres: async () => (await storedNow()) - storedBefore,
    close: async () => {
      await app.close();
      client.disconnect();
      direct.disconnect();
    },
  };
}

test('a counting read Redis does not answer is a 503 (it may have counted); checks sent once it stalls read plainly and fall back to PostgreSQL until Redis answers again', async () => {
  const redis = await startRedisServer();
  const pid = redis.process.child.pid as number;
  const t = await apiOn(redis.url, 'frozenread');
  try {
    expect((await check([t.ref], t.app)).status).toBe(200); // miss: fills the cache
    expect((await check([t.ref], t.app)).status).toBe(200); // counted by the read
    expect(await t.inRedis()).toBe(2);

    process.kill(pid, 'SIGSTOP');
    const first = check([t.ref], t.app);
    // Sent once the first counting read has been out past the stall bound: a plain read, which
    // times out too, and PostgreSQL answers and counts.
    await new Promise((r) => setTimeout(r, 600));
    const second = check([t.ref], t.app);
    const [ambiguous, degraded] = await Promise.all([first, second]);
    expect([ambiguous.status, (ambiguous.body as { error: { code: string } }).error.code]).toEqual([
      503,
      'unavailable',
    ]);
    expect([degraded.status, (degraded.body as { degraded: boolean }).degraded]).toEqual([200, true]);
    expect(await t.inPostgres()).toBe(1);

    process.kill(pid, 'SIGCONT');
    // A plain read that succeeds turns counting reads back on.
    expect((await check([t.ref], t.app)).status).toBe(200);
    expect((await check([t.ref], t.app)).status).toBe(200);
    // Redis ran the 503's script once it woke: 2 before, that one, and the last two. Stored in
    // all: the five checks answered 200 plus the one answered 503, the bound the README states.
    expect(await t.inRedis()).toBe(5);
    expect(await t.inPostgres()).toBe(1);
  } finally {
    resume(pid);
    await t.close();
    await redis.stop();
  }
});

test('a connection dropped under a counting read fails the check (503) instead of sending the script again after the reconnect', async () => {
  const redis = await startRedisServer();
  const pid = redis.process.child.pid as number;
  const proxy = await startTcpProxy(redis.port);
  const t = await apiOn(`redis://127.0.0.1:${proxy.port}`, 'dropread');
  try {
    expect((await check([t.ref], t.app)).status).toBe(200); // miss: fills the cache
    expect((await check([t.ref], t.app)).status).toBe(200); // counted by the read
    // The script reaches a Redis that cannot answer yet; then the connection drops.
    process.kill(pid, 'SIGSTOP');
    // Cut once the client has written the counting read (seen on the real client), not by a guess.
    const sent = new Promise<void>((resolve) =>
      watchCommands(t.client as Redis, (name) => name === 'evalsha' && resolve()),
    );
    const dropped = check([t.ref], t.app);
    await sent;
    await new Promise((r) => setTimeout(r, 50));
    proxy.block();
    const res = await dropped;
    expect([res.status, (res.body as { error: { code: string } }).error.code]).toEqual([503, 'unavailable']);
    proxy.unblock();
    process.kill(pid, 'SIGCONT');
    await waitFor(async () => t.client.status === 'ready', { what: 'the reconnect', timeoutMs: 10_000 });
    expect((await check([t.ref], t.app)).status).toBe(200);
    expect((await check([t.ref], t.app)).status).toBe(200);
    // Four checks answered 200; the dropped one may have run once before the drop, never twice.
    const counted = await t.inRedis();
    expect(counted).toBeGreaterThanOrEqual(4);
    expect(counted).toBeLessThanOrEqual(5);
    expect(await t.inPostgres()).toBe(0);
  } finally {
    resume(pid);
    await t.close();
    await proxy.close();
    await redis.stop();
  }
});

test('WRITE_MODE=direct with PostgreSQL down: a check answered from the cache alone counts in Redis and is degraded, not a 503', async () => {
  const prefix = `${ctx.config.keyPrefix}directpgdown`;
  const [known] = pkgs(0, 1, 'directpgdown') as [PackageRef];
  await new PackageStore(ctx.db.pool).insertBatch([{ ref: known, firstSeenAt: new Date(1_000) }]);
  const up = await serveApp(ctx, { writeMode: 'direct', keyPrefix: prefix });
  const dead = await deadDependencies();
  const pgDown = await serveApp(ctx, { writeMode: 'direct', keyPrefix: prefix }, { pool: dead.pool });
  try {
    // Fills the cache (package and signer) through PostgreSQL, and counts there.
    expect((await check([known], up)).status).toBe(200);
    const res = await check([known], pgDown);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ degraded: true, results: [{ known: true }] });
    expect((await storedReports(ctx.db.pool)).get(packageKey(known))?.reports).toBe(1);
    const hash = new KeySchema(prefix).partition(partitionOf(packageKey(known), PARTITIONS)).reports;
    expect(Number(await ctx.redis.hget(hash, `n:${packageKey(known)}`))).toBe(1);
  } finally {
    await Promise.all([up.close(), pgDown.close()]);
    await dead.close();
  }
});
