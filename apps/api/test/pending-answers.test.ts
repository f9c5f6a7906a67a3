import { EvaluationStore, packageKey, type PackageRef } from '@safepkg/core';
import { pkgs, useTestContext } from '@safepkg/testkit';
import { ApiMetrics } from '../src/metrics';
import { serveApp, type TestServer } from './helpers';

// A cache miss buffered moments ago is answered pending from the buffer, without a PostgreSQL
// lookup; an older entry, or one the cache TTL no longer covers, is looked up as before.

const TOKEN = 'pending-answers-admin-token-01';
const ctx = useTestContext({ bufferPartitions: 4, adminToken: TOKEN });
const metrics = new ApiMetrics({ defaultMetrics: false });
let server: TestServer;
beforeAll(async () => {
  server = await serveApp(ctx, {}, { metrics });
});
afterAll(() => server.close());

interface CheckBody {
  results: { status: string; known: boolean; pending: boolean; source: string | null }[];
}
const check = async (packages: readonly PackageRef[], s = server) => {
  const res = await s.request('POST', '/v1/packages/check', { packages });
  expect(res.status).toBe(200);
  return (res.body as CheckBody).results;
};
const counter = async (name: string, m = metrics) =>
  (await m.registry.getSingleMetric(name)?.get())?.values.reduce((a, v) => a + v.value, 0) ?? 0;

/** Rewrites the buffered payload's time, as if the entry had waited that long for its flush. */
async function ageEntry(ref: PackageRef, ageMs: number) {
  const key = packageKey(ref);
  for (let p = 0; p < ctx.config.bufferPartitions; p++) {
    const k = ctx.keys.partition(p);
    if ((await ctx.redis.zscore(k.pending, key)) !== null)
      await ctx.redis.hset(k.data, key, JSON.stringify({ t: Date.now() - ageMs }));
  }
}

test('a second check of a package buffered moments ago asks PostgreSQL nothing and answers it pending', async () => {
  const batch = pkgs(0, 20, 'young');
  const first = await check(batch);
  expect(first.every((r) => r.pending && !r.known)).toBe(true);
  const [lookups, answered] = [
    await counter('safepkg_check_postgres_lookups_total'),
    await counter('safepkg_pending_answers_total'),
  ];
  const again = await check(batch);
  expect(again.every((r) => r.pending && !r.known && r.status === 'unknown')).toBe(true);
  expect(await counter('safepkg_check_postgres_lookups_total')).toBe(lookups);
  expect(await counter('safepkg_pending_answers_total')).toBe(answered + 20);
});

test('a pending package with a verdict is answered the verdict: the write-through cache is read first', async () => {
  const [p] = pkgs(0, 1, 'verdictpending') as [PackageRef];
  await check([p]);
  const res = await server.request(
    'POST',
    '/v1/admin/evaluations',
    { evaluations: [{ ...p, verdict: 'malicious', source: 'manual', threatIndex: 0.9 }] },
    { authorization: `Bearer ${TOKEN}` },
  );
  expect(res.status).toBe(200);
  const [r] = await check([p]);
  expect([r?.status, r?.known, r?.source]).toEqual(['malicious', true, 'manual']);
});

test('an entry older than the window is looked up: a verdict stored meanwhile is answered even without a cache entry', async () => {
  const [p] = pkgs(0, 1, 'oldpending') as [PackageRef];
  await check([p]);
  // Stored and evaluated while still buffered, then its cache entry gone (expired or evicted).
  await new EvaluationStore(ctx.db.pool).record(
    [{ ...p, verdict: 'suspicious', source: 'model', threatIndex: 0.5 }],
    'test',
  );
  await ctx.redis.del(ctx.keys.cache(packageKey(p)));
  await ageEntry(p, ctx.config.cacheTtlS * 1000);
  const lookups = await counter('safepkg_check_postgres_lookups_total');
  const [r] = await check([p]);
  expect([r?.status, r?.known]).toEqual(['suspicious', true]);
  expect(await counter('safepkg_check_postgres_lookups_total')).toBe(lookups + 1);
});

test('with PENDING_ANSWER_MAX_AGE_MS=0 every miss is looked up', async () => {
  const m = new ApiMetrics({ defaultMetrics: false });
  const off = await serveApp(ctx, { pendingAnswerMaxAgeMs: 0 }, { metrics: m });
  try {
    const batch = pkgs(0, 5, 'offpending');
    await check(batch, off);
    await check(batch, off);
    expect(await counter('safepkg_check_postgres_lookups_total', m)).toBe(10);
    expect(await counter('safepkg_pending_answers_total', m)).toBe(0);
  } finally {
    await off.close();
  }
});
