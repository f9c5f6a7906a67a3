import { Redis } from 'ioredis';
import {
  applyReportSets,
  KeySchema,
  packageKey,
  PackageStore,
  ReportBuffer,
  type PackageRef,
} from '@safepkg/core';
import { freePort, pkgs, reportKeysLeft, storedReports, useTestContext } from '@safepkg/testkit';
import { serveApp, type TestServer } from './helpers';

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
