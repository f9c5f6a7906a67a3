import { createLogger, PackageStore, packageKey, ResultCache } from '@safepkg/core';
import { pkgs, useTestContext } from '@safepkg/testkit';
import { EvaluationService } from '../src/evaluation-service';
import { serveApp, type TestServer } from './helpers';

const TOKEN = 'test-admin-token-0123456789';
const ctx = useTestContext({ adminToken: TOKEN });
const auth = { authorization: `Bearer ${TOKEN}` };

interface Result {
  name: string;
  status: string;
  source: string | null;
  threatIndex: number | null;
  known: boolean;
}

let server: TestServer;
beforeAll(async () => {
  server = await serveApp(ctx);
});
afterAll(() => server.close());

test('admin routes need the bearer token; a wrong or missing one gets 401 and changes nothing', async () => {
  const [p] = pkgs(0, 1, 'auth');
  const body = { evaluations: [{ ...p, verdict: 'malicious', source: 'manual', threatIndex: 1 }] };
  const attempts: Record<string, string>[] = [
    {},
    { authorization: 'Bearer wrong-token-000000000000' },
    { authorization: TOKEN },
  ];
  for (const headers of attempts) {
    const res = await server.request('POST', '/v1/admin/evaluations', body, headers);
    expect(res.status).toBe(401);
    expect(res.body).toMatchObject({ error: { code: 'unauthorized' } });
  }
  const { rowCount } = await ctx.db.pool.query('SELECT 1 FROM evaluations');
  expect(rowCount).toBe(0);
});

test('without ADMIN_TOKEN the admin API is disabled, not open', async () => {
  const open = await serveApp(ctx, { adminToken: null });
  try {
    const res = await open.request('POST', '/v1/admin/analysis/claim', { limit: 1 }, auth);
    expect(res.status).toBe(404);
    expect(res.body).toMatchObject({
      error: { code: 'not_found', message: expect.stringContaining('ADMIN_TOKEN') },
    });
  } finally {
    await open.close();
  }
});

test('evaluations are validated like checks: every bad field listed, nothing stored', async () => {
  const res = await server.request(
    'POST',
    '/v1/admin/evaluations',
    {
      evaluations: [
        {
          name: 'nodot',
          versionCode: 1,
          signature: 'a'.repeat(64),
          verdict: 'evil',
          source: 'manual',
          threatIndex: 2,
        },
      ],
    },
    auth,
  );
  expect(res.status).toBe(400);
  const paths = (res.body as { error: { details: { path: string }[] } }).error.details
    .map((d) => d.path)
    .sort();
  expect(paths).toEqual(['evaluations[0].name', 'evaluations[0].threatIndex', 'evaluations[0].verdict']);
  expect((await ctx.db.pool.query('SELECT 1 FROM evaluations')).rowCount).toBe(0);
});

test('a verdict posted after a check is answered by the next check; claims hand out new packages', async () => {
  const refs = pkgs(100, 20, 'flow');
  await new PackageStore(ctx.db.pool).insertBatch(refs.map((ref) => ({ ref, firstSeenAt: new Date() })));

  const first = await server.request('POST', '/v1/packages/check', { packages: refs });
  expect((first.body as { results: Result[] }).results.map((r) => [r.status, r.known])).toEqual(
    refs.map(() => ['unknown', true]),
  );

  const claim = await server.request('POST', '/v1/admin/analysis/claim', { limit: 5 }, auth);
  expect(claim.status).toBe(200);
  const claimed = (claim.body as { packages: { name: string; attempts: number }[] }).packages;
  expect(claimed).toHaveLength(5);
  expect(claimed.every((c) => c.attempts === 1 && refs.some((r) => r.name === c.name))).toBe(true);

  const verdicts = refs.map((r, i) => ({
    ...r,
    verdict: i % 2 ? 'malicious' : 'safe',
    source: 'manual',
    threatIndex: i / 20,
  }));
  const posted = await server.request(
    'POST',
    '/v1/admin/evaluations',
    { evaluations: verdicts },
    { ...auth, 'x-actor': 'alice' },
  );
  expect(posted).toMatchObject({ status: 200, body: { accepted: 20 } });

  const second = await server.request('POST', '/v1/packages/check', { packages: refs });
  expect(
    (second.body as { results: Result[] }).results.map((r) => [r.status, r.source, r.threatIndex]),
  ).toEqual(verdicts.map((v) => [v.verdict, 'manual', v.threatIndex]));
  const actors = await ctx.db.pool.query<{ created_by: string }>(
    'SELECT DISTINCT created_by FROM evaluations',
  );
  expect(actors.rows).toEqual([{ created_by: 'alice' }]);
});

test('a slow reader cannot put an older verdict back into the cache', async () => {
  const [ref] = pkgs(500, 1, 'race');
  if (!ref) throw new Error('no package');
  await new PackageStore(ctx.db.pool).insertBatch([{ ref, firstSeenAt: new Date() }]);

  // The reader pauses after reading the old row (rev 0) and before filling the cache.
  let releaseReader!: () => void;
  let readerPaused!: () => void;
  const paused = new Promise<void>((r) => (readerPaused = r));
  const gate = new Promise<void>((r) => (releaseReader = r));
  const slow = await serveApp(
    ctx,
    {},
    {
      checkHooks: {
        afterLookup: async () => {
          readerPaused();
          await gate;
        },
      },
    },
  );
  try {
    const reading = slow.request('POST', '/v1/packages/check', { packages: [ref] });
    await paused;
    const posted = await server.request(
      'POST',
      '/v1/admin/evaluations',
      { evaluations: [{ ...ref, verdict: 'malicious', source: 'manual', threatIndex: 0.99 }] },
      auth,
    );
    expect(posted.status).toBe(200);
    releaseReader();
    const stale = await reading;
    // The slow reader itself answers what it read (the old status)…
    expect((stale.body as { results: Result[] }).results[0]?.status).toBe('unknown');
    // …but the cache keeps the newer verdict, so every later check answers it.
    const cached = await ctx.redis.get(ctx.keys.cache(packageKey(ref)));
    expect(JSON.parse(cached as string)).toMatchObject({ rev: 1, v: 'malicious' });
    const after = await server.request('POST', '/v1/packages/check', { packages: [ref] });
    expect((after.body as { results: Result[] }).results[0]).toMatchObject({
      status: 'malicious',
      source: 'manual',
      known: true,
    });
  } finally {
    await slow.close();
  }
});

describe('threat index values PostgreSQL cannot store', () => {
  test('a threatIndex between 0 and the smallest normal real is refused with 400 naming the field; 0 and that real are stored', async () => {
    const [tiny, zero, smallest] = pkgs(0, 3, 'tinyti');
    const one = (p: typeof tiny, threatIndex: number) => ({
      evaluations: [{ ...p, verdict: 'safe', source: 'model', threatIndex }],
    });
    const refused = await server.request('POST', '/v1/admin/evaluations', one(tiny, 1e-50), auth);
    expect(refused.status).toBe(400);
    expect(refused.headers.get('retry-after')).toBeNull();
    expect(refused.body).toMatchObject({
      error: { code: 'invalid_request', details: [{ path: 'evaluations[0].threatIndex' }] },
    });
    expect((await server.request('POST', '/v1/admin/evaluations', one(zero, 0), auth)).status).toBe(200);
    expect(
      (await server.request('POST', '/v1/admin/evaluations', one(smallest, 1.1754943508222875e-38), auth))
        .status,
    ).toBe(200);
    const { rows } = await ctx.db.pool.query<{ name: string; threat_index: number }>(
      'SELECT name, threat_index FROM packages WHERE name = ANY($1) ORDER BY name',
      [[tiny!.name, zero!.name, smallest!.name]],
    );
    expect(rows.map((r) => r.name).sort()).toEqual([zero!.name, smallest!.name].sort());
  });

  test('a value PostgreSQL refuses on the evaluation path is a 400 invalid_request, not a 503 to retry forever', async () => {
    // The schema no longer lets such a value through, so the service is called directly with
    // the value the review found (real refuses 1e-50 with SQLSTATE 22003).
    const service = new EvaluationService(
      ctx.db.pool,
      new ResultCache(ctx.redis, ctx.keys, 60),
      createLogger({ logLevel: 'silent' }, 'test'),
    );
    const [p] = pkgs(0, 1, 'pgrefuses');
    const err = await service
      .record([{ ...p!, verdict: 'safe', source: 'model', threatIndex: 1e-50 }], 'test')
      .then(
        () => null,
        (e: unknown) => e,
      );
    expect(err).toMatchObject({
      code: 'invalid_request',
      details: [{ path: 'evaluations', message: expect.stringContaining('22003') }],
    });

    // And over HTTP: a constraint of this test's own database refuses one actor (SQLSTATE 23514).
    await ctx.db.pool.query(
      "ALTER TABLE evaluations ADD CONSTRAINT test_refused_actor CHECK (created_by <> 'refused-actor')",
    );
    try {
      const body = { evaluations: [{ ...p, verdict: 'safe', source: 'model', threatIndex: 0.5 }] };
      const res = await server.request('POST', '/v1/admin/evaluations', body, {
        ...auth,
        'x-actor': 'refused-actor',
      });
      expect([res.status, res.headers.get('retry-after')]).toEqual([400, null]);
      expect(res.body).toMatchObject({
        error: {
          code: 'invalid_request',
          details: [{ path: 'evaluations', message: expect.stringContaining('23514') }],
        },
      });
    } finally {
      await ctx.db.pool.query('ALTER TABLE evaluations DROP CONSTRAINT test_refused_actor');
    }
  });
});
