import type { Redis } from 'ioredis';
import type { Pool } from 'pg';
import { PackageStore, packageKey, RedisBuffer } from '@safepkg/core';
import { pkgs, useTestContext } from '@safepkg/testkit';
import { deadDependencies, serveApp, type TestServer } from './helpers';

const TOKEN = 'signer-admin-token-0123456789';
const ctx = useTestContext({ adminToken: TOKEN });
const auth = { authorization: `Bearer ${TOKEN}` };

interface Result {
  name: string;
  signature: string;
  status: string;
  source: string | null;
  threatIndex: number | null;
  basis: string | null;
  known: boolean;
  pending: boolean;
}

/** A signature of its own per test (pkgs() gives each package a distinct one). */
function signer(c: string): string {
  return c.repeat(64);
}

function signedBy(signature: string, from: number, count: number, ns: string) {
  return pkgs(from, count, ns).map((p) => ({ ...p, signature }));
}

// Two app instances on one PostgreSQL and Redis: two pods.
let podA: TestServer;
let podB: TestServer;
beforeAll(async () => {
  [podA, podB] = await Promise.all([serveApp(ctx), serveApp(ctx)]);
});
afterAll(() => Promise.all([podA.close(), podB.close()]));

const postSigners = (server: TestServer, evaluations: unknown[], headers: Record<string, string> = {}) =>
  server.request('POST', '/v1/admin/signer-evaluations', { evaluations }, { ...auth, ...headers });

const check = async (server: TestServer, packages: unknown[]) => {
  const res = await server.request('POST', '/v1/packages/check', { packages });
  expect(res.status).toBe(200);
  return (res.body as { results: Result[] }).results;
};

async function historyCount(): Promise<number> {
  return Number((await ctx.db.pool.query('SELECT count(*) AS n FROM signer_evaluations')).rows[0].n);
}

describe('POST /v1/admin/signer-evaluations', () => {
  test('needs the admin token: a wrong or missing one gets 401 and stores nothing', async () => {
    const body = {
      evaluations: [{ signature: signer('1'), verdict: 'malicious', source: 'manual', threatIndex: 1 }],
    };
    const before = await historyCount();
    const attempts: Record<string, string>[] = [
      {},
      { authorization: 'Bearer wrong-token-000000000000' },
      { authorization: TOKEN },
    ];
    for (const headers of attempts) {
      const res = await podA.request('POST', '/v1/admin/signer-evaluations', body, headers);
      expect(res.status).toBe(401);
      expect(res.body).toMatchObject({ error: { code: 'unauthorized' } });
    }
    expect(await historyCount()).toBe(before);
  });

  test('every bad field is listed in one 400 and nothing is stored', async () => {
    const before = await historyCount();
    const res = await postSigners(podA, [
      { signature: 'xyz', verdict: 'evil', source: 'human', threatIndex: 2 },
      { signature: signer('2'), verdict: 'safe', source: 'model', threatIndex: 1e-50, extra: 1 },
      { verdict: 'safe', source: 'model' },
      { signature: signer('2'), verdict: 'safe', source: 'model', threatIndex: 0.5 },
    ]);
    expect(res.status).toBe(400);
    const paths = (res.body as { error: { details: { path: string }[] } }).error.details
      .map((d) => d.path)
      .sort();
    expect(paths).toEqual(
      [
        'evaluations[0].signature',
        'evaluations[0].verdict',
        'evaluations[0].source',
        'evaluations[0].threatIndex',
        'evaluations[1].threatIndex',
        'evaluations[1].extra',
        'evaluations[2].signature',
        'evaluations[2].threatIndex',
      ].sort(),
    );
    for (const body of [{ evaluations: [] }, { evaluations: 'x' }, {}, { evaluations: [], more: 1 }]) {
      const bad = await podA.request('POST', '/v1/admin/signer-evaluations', body, auth);
      expect(bad.status).toBe(400);
    }
    const tooMany = Array.from({ length: 1001 }, () => ({
      signature: signer('3'),
      verdict: 'safe',
      source: 'model',
      threatIndex: 0,
    }));
    const big = await postSigners(podA, tooMany);
    expect(big).toMatchObject({ status: 400, body: { error: { details: [{ path: 'evaluations' }] } } });
    const actor = await postSigners(podA, [tooMany[0]], { 'x-actor': 'not an actor!' });
    expect(actor).toMatchObject({ status: 400, body: { error: { details: [{ path: 'X-Actor' }] } } });
    expect(await historyCount()).toBe(before);
  });

  test('X-Actor is recorded as for package evaluations (admin when absent); 1000 items accepted; history kept', async () => {
    const s = signer('4');
    const one = (verdict: string, source = 'model') => ({ signature: s, verdict, source, threatIndex: 0.5 });
    expect(await postSigners(podA, [one('suspicious')], { 'x-actor': 'model-v1@lab' })).toMatchObject({
      status: 200,
      body: { accepted: 1 },
    });
    expect(await postSigners(podA, [one('malicious', 'manual')])).toMatchObject({ status: 200 });
    // Upper-case hex is the same signature, as for packages.
    const upper = { ...one('safe', 'manual'), signature: s.toUpperCase() };
    expect(
      await postSigners(
        podA,
        Array.from({ length: 1000 }, () => upper),
      ),
    ).toMatchObject({
      status: 200,
      body: { accepted: 1000 },
    });
    const { rows } = await ctx.db.pool.query<{ created_by: string; verdict: string; n: string }>(
      `SELECT created_by, verdict, count(*) AS n FROM signer_evaluations WHERE signature = $1
        GROUP BY created_by, verdict ORDER BY min(id)`,
      [s],
    );
    expect(rows).toEqual([
      { created_by: 'model-v1@lab', verdict: 'suspicious', n: '1' },
      { created_by: 'admin', verdict: 'malicious', n: '1' },
      { created_by: 'admin', verdict: 'safe', n: '1000' },
    ]);
    const current = await ctx.db.pool.query('SELECT verdict, source, rev FROM signers WHERE signature = $1', [
      s,
    ]);
    expect(current.rows).toEqual([{ verdict: 'safe', source: 'manual', rev: '3' }]);
  });
});

describe('answering from package and signer verdicts', () => {
  test('precedence: package manual, signer manual, package model, signer model; basis says which', async () => {
    const manualSigner = signer('5');
    const modelSigner = signer('6');
    const noSigner = signer('7');
    const [pManualVsSignerManual, pModelVsSignerManual] = signedBy(manualSigner, 0, 2, 'precm');
    const [pModelVsSignerModel, pNoneVsSignerModel] = signedBy(modelSigner, 0, 2, 'precd');
    const [pNoneNoSigner, pModelNoSigner] = signedBy(noSigner, 0, 2, 'precn');
    const all = [
      pManualVsSignerManual,
      pModelVsSignerManual,
      pModelVsSignerModel,
      pNoneVsSignerModel,
      pNoneNoSigner,
      pModelNoSigner,
    ];
    await new PackageStore(ctx.db.pool).insertBatch(
      all.map((ref) => ({ ref: ref!, firstSeenAt: new Date() })),
    );
    const own = await podA.request(
      'POST',
      '/v1/admin/evaluations',
      {
        evaluations: [
          { ...pManualVsSignerManual, verdict: 'safe', source: 'manual', threatIndex: 0.01 },
          { ...pModelVsSignerManual, verdict: 'safe', source: 'model', threatIndex: 0.02 },
          { ...pModelVsSignerModel, verdict: 'safe', source: 'model', threatIndex: 0.03 },
          { ...pModelNoSigner, verdict: 'suspicious', source: 'model', threatIndex: 0.5 },
        ],
      },
      auth,
    );
    expect(own.status).toBe(200);
    expect(
      await postSigners(podA, [
        { signature: manualSigner, verdict: 'malicious', source: 'manual', threatIndex: 0.9 },
        { signature: modelSigner, verdict: 'malicious', source: 'model', threatIndex: 0.8 },
      ]),
    ).toMatchObject({ status: 200 });

    const expected = [
      ['safe', 'manual', 0.01, 'package'],
      ['malicious', 'manual', 0.9, 'signer'],
      ['safe', 'model', 0.03, 'package'],
      ['malicious', 'model', 0.8, 'signer'],
      ['unknown', null, null, null],
      ['suspicious', 'model', 0.5, 'package'],
    ];
    // Twice per pod: from PostgreSQL (filling the cache), then from the cache.
    for (const server of [podA, podB, podA, podB]) {
      const results = await check(server, all);
      expect(
        results.map((r) => [r.status, r.source, r.threatIndex && Number(r.threatIndex.toFixed(2)), r.basis]),
      ).toEqual(expected);
    }
    for (const [i, ref] of all.entries()) {
      const res = await podB.request(
        'GET',
        `/v1/packages/${ref!.name}/${ref!.versionCode}/${ref!.signature}`,
      );
      expect(res.status).toBe(200);
      const r = res.body as Result;
      expect([r.status, r.source, r.threatIndex && Number(r.threatIndex.toFixed(2)), r.basis]).toEqual(
        expected[i],
      );
    }
    // The analyst's view shows the same answer, the package's own verdict and the signer's.
    const signerOf = new Map([
      [manualSigner, ['malicious', 'manual', 0.9]],
      [modelSigner, ['malicious', 'model', 0.8]],
    ]);
    for (const [i, ref] of all.entries()) {
      const res = await podA.request(
        'GET',
        `/v1/admin/packages/${ref!.name}/${ref!.versionCode}/${ref!.signature}`,
        undefined,
        auth,
      );
      expect(res.status).toBe(200);
      const d = res.body as {
        status: string;
        answer: { status: string; source: string | null; threatIndex: number | null; basis: string | null };
        signer: { status: string; source: string; threatIndex: number; rev: number } | null;
      };
      const a = d.answer;
      expect([a.status, a.source, a.threatIndex && Number(a.threatIndex.toFixed(2)), a.basis]).toEqual(
        expected[i],
      );
      const s = d.signer;
      expect(s && [s.status, s.source, Number(s.threatIndex.toFixed(2))]).toEqual(
        signerOf.get(ref!.signature) ?? null,
      );
      if (s) expect(s.rev).toBe(1);
    }
    // The package's own status stays its own: the signer does not rewrite it.
    const own2 = await podA.request(
      'GET',
      `/v1/admin/packages/${pNoneVsSignerModel!.name}/${pNoneVsSignerModel!.versionCode}/${pNoneVsSignerModel!.signature}`,
      undefined,
      auth,
    );
    expect(own2.body).toMatchObject({
      status: 'unknown',
      source: null,
      answer: { status: 'malicious', basis: 'signer' },
    });
  });

  test('a new signer verdict is answered by every pod on the next check for cached, stored-uncached and never-seen packages, without rewriting package entries', async () => {
    const s = signer('8');
    const [cached, storedOnly, neverSeen] = signedBy(s, 0, 3, 'next');
    await new PackageStore(ctx.db.pool).insertBatch(
      [cached!, storedOnly!].map((ref) => ({ ref, firstSeenAt: new Date() })),
    );
    // Both pods have seen the signer (a negative entry) and the cached package before the verdict.
    for (const server of [podA, podB]) {
      expect((await check(server, [cached])).map((r) => [r.status, r.basis])).toEqual([['unknown', null]]);
    }
    expect(JSON.parse((await ctx.redis.get(ctx.keys.signer(s))) as string)).toMatchObject({
      rev: 0,
      v: null,
    });
    const packageEntry = await ctx.redis.get(ctx.keys.cache(packageKey(cached!)));
    expect(packageEntry).not.toBeNull();

    expect(
      await postSigners(podA, [{ signature: s, verdict: 'malicious', source: 'model', threatIndex: 0.7 }]),
    ).toMatchObject({ status: 200 });

    for (const server of [podB, podA]) {
      const results = await check(server, [cached, storedOnly, neverSeen]);
      expect(results.map((r) => [r.name, r.status, r.source, r.basis, r.known, r.pending])).toEqual([
        [cached!.name, 'malicious', 'model', 'signer', true, false],
        [storedOnly!.name, 'malicious', 'model', 'signer', true, false],
        [neverSeen!.name, 'malicious', 'model', 'signer', false, true],
      ]);
    }
    // The never-seen package is still buffered for the flusher (and so queued for analysis).
    const buffer = new RedisBuffer(
      ctx.redis,
      ctx.keys,
      ctx.config.bufferPartitions,
      ctx.config.maxBufferDepth,
    );
    expect(await buffer.isPending([packageKey(neverSeen!)])).toEqual([true]);
    // The package's own entry was not rewritten: the combination happens at answer time.
    expect(await ctx.redis.get(ctx.keys.cache(packageKey(cached!)))).toBe(packageEntry);
    // A later manual safe verdict on the package itself outranks the signer's model verdict.
    await podB.request(
      'POST',
      '/v1/admin/evaluations',
      { evaluations: [{ ...cached, verdict: 'safe', source: 'manual', threatIndex: 0 }] },
      auth,
    );
    expect((await check(podA, [cached])).map((r) => [r.status, r.basis])).toEqual([['safe', 'package']]);
  });

  test('GET of a never-seen package signed by a condemned certificate answers the signer verdict instead of 404', async () => {
    const s = signer('9');
    const [never, other] = signedBy(s, 0, 2, 'getnever');
    const path = (p: typeof never) => `/v1/packages/${p!.name}/${p!.versionCode}/${p!.signature}`;
    const unsigned = { ...other!, signature: signer('0') };
    expect((await podA.request('GET', path(never))).status).toBe(404);
    await postSigners(podA, [{ signature: s, verdict: 'suspicious', source: 'manual', threatIndex: 0.6 }]);
    const res = await podB.request('GET', path(never));
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ status: 'suspicious', basis: 'signer', known: false, pending: false });
    expect((await podB.request('GET', path(unsigned))).status).toBe(404);
  });
});

test('a slow reader that read an old signer row (none, or an older rev) cannot put it back over a newer entry', async () => {
  let releaseReader!: () => void;
  let readerPaused!: () => void;
  let paused!: Promise<void>;
  let gate!: Promise<void>;
  const arm = () => {
    paused = new Promise<void>((r) => (readerPaused = r));
    gate = new Promise<void>((r) => (releaseReader = r));
  };
  arm();
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
    const s = signer('a');
    const [ref] = signedBy(s, 0, 1, 'race');
    await new PackageStore(ctx.db.pool).insertBatch([{ ref: ref!, firstSeenAt: new Date() }]);
    const cases = [
      { verdict: 'suspicious', source: 'model', rev: 1 },
      { verdict: 'malicious', source: 'manual', rev: 2 },
    ];
    for (const c of cases) {
      // The signer entry is missing (expired), so the reader looks the signer up in PostgreSQL.
      await ctx.redis.del(ctx.keys.signer(s), ctx.keys.cache(packageKey(ref!)));
      const reading = slow.request('POST', '/v1/packages/check', { packages: [ref] });
      await paused;
      expect(
        await postSigners(podA, [{ signature: s, verdict: c.verdict, source: c.source, threatIndex: 0.9 }]),
      ).toMatchObject({ status: 200 });
      releaseReader();
      const stale = await reading;
      // The slow reader answers what it read…
      expect((stale.body as { results: Result[] }).results[0]?.status).toBe(
        c.rev === 1 ? 'unknown' : 'suspicious',
      );
      // …but the cache keeps the newer signer verdict, so every later check answers it.
      expect(JSON.parse((await ctx.redis.get(ctx.keys.signer(s))) as string)).toMatchObject({
        rev: c.rev,
        v: c.verdict,
      });
      expect((await check(podB, [ref])).map((r) => [r.status, r.basis])).toEqual([[c.verdict, 'signer']]);
      arm();
    }
  } finally {
    releaseReader();
    await slow.close();
  }
});

describe('degraded: signer verdicts are still answered', () => {
  let deadPool: Pool;
  let deadRedis: Redis;
  let closeDead: () => Promise<void>;
  let pgDown: TestServer;
  let redisDown: TestServer;
  beforeAll(async () => {
    const dead = await deadDependencies();
    closeDead = dead.close;
    deadPool = dead.pool;
    deadRedis = dead.redis;
    pgDown = await serveApp(ctx, {}, { pool: deadPool });
    redisDown = await serveApp(ctx, {}, { redis: deadRedis });
  });
  afterAll(async () => {
    await Promise.all([pgDown.close(), redisDown.close()]);
    await closeDead();
  });

  test('Redis down: signer verdicts come from PostgreSQL; PostgreSQL down: from the cache', async () => {
    const s = signer('b');
    const [stored, never] = signedBy(s, 0, 2, 'degraded');
    await new PackageStore(ctx.db.pool).insertBatch([{ ref: stored!, firstSeenAt: new Date() }]);
    await postSigners(podA, [{ signature: s, verdict: 'malicious', source: 'manual', threatIndex: 1 }]);

    const viaPg = await redisDown.request('POST', '/v1/packages/check', { packages: [stored] });
    expect(viaPg.status).toBe(200);
    expect(viaPg.body).toMatchObject({ degraded: true, results: [{ status: 'malicious', basis: 'signer' }] });

    const viaCache = await pgDown.request('POST', '/v1/packages/check', { packages: [stored, never] });
    expect(viaCache.status).toBe(200);
    expect(viaCache.body).toMatchObject({
      degraded: true,
      results: [
        { status: 'malicious', basis: 'signer' },
        { status: 'malicious', basis: 'signer', known: false, pending: true },
      ],
    });
  });
});
