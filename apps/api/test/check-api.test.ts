import { packageKey } from '@safepkg/core';
import { pkg, pkgs, useTestContext } from '@safepkg/testkit';
import { serveApp, type TestServer } from './helpers';

const ctx = useTestContext({ bufferPartitions: 4 });
let server: TestServer;
beforeAll(async () => {
  server = await serveApp(ctx);
});
afterAll(() => server.close());

interface ErrorBody {
  error: { code: string; message: string; details: { path: string; message: string }[] };
}

async function bufferDepth(): Promise<number> {
  let n = 0;
  for (let p = 0; p < ctx.config.bufferPartitions; p++)
    n += await ctx.redis.zcard(ctx.keys.partition(p).pending);
  return n;
}

test('answers every package in request order, duplicates included, and buffers each unknown one once', async () => {
  const [a, b] = pkgs(0, 2, 'order');
  const upper = { ...b, signature: b!.signature.toUpperCase() };
  const res = await server.request('POST', '/v1/packages/check', { packages: [a, upper, a, b] });
  expect(res.status).toBe(200);
  const body = res.body as { results: Record<string, unknown>[]; degraded: boolean };
  expect(body.degraded).toBe(false);
  expect(body.results.map((r) => r.name)).toEqual([a!.name, b!.name, a!.name, b!.name]);
  // Signatures are stored lower-case, so the upper-case spelling is the same package.
  expect(body.results[1]).toEqual({
    name: b!.name,
    versionCode: b!.versionCode,
    signature: b!.signature,
    status: 'unknown',
    threatIndex: null,
    source: null,
    basis: null,
    known: false,
    pending: true,
    firstSeenAt: null,
    // Pending: asked again after ANSWER_TTL_UNKNOWN_S, by then likely analysed.
    cacheTtlS: 300,
  });
  expect(await bufferDepth()).toBe(2);
});

test('lists every bad field with its path, and buffers nothing', async () => {
  const before = await bufferDepth();
  const res = await server.request('POST', '/v1/packages/check', {
    packages: [
      pkg(1, 'bad'),
      { name: '1starts.with.digit', versionCode: 1.5, signature: 'xyz' },
      { name: 'com.ok.app', versionCode: -1, signature: 'a'.repeat(64), extra: true },
      { name: 'com.ok.app', versionCode: 2 ** 53, signature: 'a'.repeat(63) },
      'not-an-object',
    ],
    other: 1,
  });
  expect(res.status).toBe(400);
  const body = res.body as ErrorBody;
  expect(body.error.code).toBe('invalid_request');
  expect(body.error.details.map((d) => d.path).sort()).toEqual(
    [
      'other',
      'packages[1].name',
      'packages[1].versionCode',
      'packages[1].signature',
      'packages[2].versionCode',
      'packages[2].extra',
      'packages[3].versionCode',
      'packages[3].signature',
      'packages[4]',
    ].sort(),
  );
  expect(await bufferDepth()).toBe(before);
});

test.each([
  ['an empty list', { packages: [] }, 'packages'],
  ['more than 1000 packages', { packages: pkgs(0, 1001, 'many') }, 'packages'],
  ['no packages field', {}, 'packages'],
  ['a JSON array body', [], '(body)'],
  ['a JSON null body', null, '(body)'],
])('rejects %s with 400', async (_label, payload, path) => {
  const res = await server.request('POST', '/v1/packages/check', payload);
  expect(res.status).toBe(400);
  expect((res.body as ErrorBody).error.details.map((d) => d.path)).toContain(path);
});

test('malformed JSON is a 400, a wrong content type a 415, a body over 1 MB a 413 — all in the envelope', async () => {
  const malformed = await server.request('POST', '/v1/packages/check', '{"packages": [');
  expect(malformed.status).toBe(400);
  expect((malformed.body as ErrorBody).error.code).toBe('invalid_request');

  const wrongType = await fetch(`${server.url}/v1/packages/check`, {
    method: 'POST',
    headers: { 'content-type': 'text/plain' },
    body: JSON.stringify({ packages: [pkg(1)] }),
  });
  expect(wrongType.status).toBe(415);
  expect(((await wrongType.json()) as ErrorBody).error.code).toBe('unsupported_media_type');

  const huge = await server.request('POST', '/v1/packages/check', {
    packages: [{ name: 'x'.repeat(1_100_000) }],
  });
  expect(huge.status).toBe(413);
  expect((huge.body as ErrorBody).error.code).toBe('payload_too_large');
});

test('GET of one package: 404 when never seen, the pending state once checked, 400 on a bad key; it buffers nothing', async () => {
  const p = pkg(7, 'get');
  const path = `/v1/packages/${p.name}/${p.versionCode}/${p.signature}`;
  const before = await bufferDepth();
  const missing = await server.request('GET', path);
  expect(missing.status).toBe(404);
  expect((missing.body as ErrorBody).error.code).toBe('not_found');
  expect(await bufferDepth()).toBe(before);

  await server.request('POST', '/v1/packages/check', { packages: [p] });
  const pending = await server.request('GET', path);
  expect(pending).toMatchObject({
    status: 200,
    body: { name: p.name, known: false, pending: true, degraded: false },
  });

  const bad = await server.request('GET', `/v1/packages/nodot/x/${p.signature}`);
  expect(bad.status).toBe(400);
  expect((bad.body as ErrorBody).error.details.map((d) => d.path).sort()).toEqual(['name', 'versionCode']);
});

test('a package found in PostgreSQL is answered known and cached with rev 0; unknown ones are never cached', async () => {
  const [known, unknown] = pkgs(0, 2, 'cache');
  const { PackageStore } = await import('@safepkg/core');
  await new PackageStore(ctx.db.pool).insertBatch([
    { ref: known!, firstSeenAt: new Date('2026-01-02T03:04:05Z') },
  ]);
  const res = await server.request('POST', '/v1/packages/check', { packages: [known, unknown] });
  const results = (res.body as { results: Record<string, unknown>[] }).results;
  expect(results[0]).toMatchObject({ known: true, pending: false, firstSeenAt: '2026-01-02T03:04:05.000Z' });
  expect(results[1]).toMatchObject({ known: false, pending: true });
  expect(JSON.parse((await ctx.redis.get(ctx.keys.cache(packageKey(known!)))) as string)).toMatchObject({
    rev: 0,
  });
  expect(await ctx.redis.get(ctx.keys.cache(packageKey(unknown!)))).toBeNull();
});

test('unknown routes get the error envelope with 404; health, readiness and metrics answer', async () => {
  const res = await server.request('GET', '/v2/nothing');
  expect(res.status).toBe(404);
  expect((res.body as ErrorBody).error.code).toBe('not_found');
  expect((await server.request('GET', '/healthz')).status).toBe(200);
  expect(await server.request('GET', '/readyz')).toMatchObject({
    status: 200,
    body: { checks: { postgres: true, redis: true } },
  });
  const metrics = await server.request('GET', '/metrics');
  expect(metrics.body).toEqual(expect.stringContaining('safepkg_checked_packages_total'));
});
