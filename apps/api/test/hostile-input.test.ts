import { request } from 'node:http';
import { connect } from 'node:net';
import { Writable } from 'node:stream';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import { Redis } from 'ioredis';
import { createLogger } from '@safepkg/core';
import { pkg, pkgs, useTestContext } from '@safepkg/testkit';
import { createApp } from '../src/app';
import { ApiMetrics } from '../src/metrics';
import { createHttpServer } from '../src/server';
import { serveApp, type TestServer } from './helpers';

const TOKEN = 'hostile-admin-token-0123456789';
const ctx = useTestContext({ adminToken: TOKEN, bufferPartitions: 4 });
let server: TestServer;
beforeAll(async () => {
  server = await serveApp(ctx);
});
afterAll(() => server.close());

interface Envelope {
  error: { code: string; message: string; details: { path: string; message: string }[] };
}

async function stateFingerprint(): Promise<string> {
  const parts: string[] = [];
  for (let p = 0; p < ctx.config.bufferPartitions; p++) {
    const k = ctx.keys.partition(p);
    parts.push(
      `${await ctx.redis.zcard(k.pending)}/${await ctx.redis.hlen(k.data)}/${await ctx.redis.get(k.seq)}`,
    );
  }
  const { rows } = await ctx.db.pool.query<{ p: string; q: string }>(
    'SELECT (SELECT count(*) FROM packages) AS p, (SELECT count(*) FROM analysis_queue) AS q',
  );
  return `${parts.join(',')}|${rows[0]?.p}|${rows[0]?.q}`;
}

const valid = () => pkg(Math.floor(Math.random() * 1e6), 'fuzz');

/** A value of a JSON type other than the field's own, or an out-of-range one of the same. */
const badName = fc.oneof(
  fc.string().filter((s) => !/^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+$/.test(s)),
  fc.constantFrom(
    "com.a'; DROP TABLE packages;--",
    'com.a\u0000b',
    'com..a',
    '.com.a',
    'com.a.',
    'Ω.app',
    'com.a b',
  ),
  fc.constant(`com.${'a'.repeat(252)}`), // 256 characters
  fc.integer(),
  fc.constant(null),
  fc.array(fc.string(), { maxLength: 2 }),
);
const badVersion = fc.oneof(
  fc.integer({ max: -1 }),
  fc.double({ noInteger: true }),
  fc.constantFrom(2 ** 53, Number.MAX_VALUE, '42', null, true),
);
const badSignature = fc.oneof(
  fc.string().filter((s) => !/^[0-9a-fA-F]{64}$/.test(s)),
  fc.constantFrom('g'.repeat(64), 'a'.repeat(63), 'a'.repeat(65), "' OR 1=1 --".padEnd(64, 'a')),
  fc.integer(),
);

/** Bodies that are invalid by construction: a valid body with at least one field broken. */
const badBody = fc.oneof(
  fc
    .record({
      field: fc.constantFrom('name', 'versionCode', 'signature'),
      at: fc.nat(5),
      n: fc.integer({ min: 1, max: 6 }),
      name: badName,
      versionCode: badVersion,
      signature: badSignature,
    })
    .map(({ field, at, n, ...bad }) => {
      const packages = Array.from({ length: n }, (): Record<string, unknown> => ({ ...valid() }));
      const i = at % n;
      packages[i] = { ...packages[i], [field]: bad[field as keyof typeof bad] };
      return { packages } as unknown;
    }),
  fc
    .record({ extra: fc.string({ minLength: 1, maxLength: 8 }) })
    .map(({ extra }) => ({ packages: [{ ...valid(), [`x${extra}`]: 1 }] })),
  fc
    .record({ extra: fc.string({ minLength: 1, maxLength: 8 }) })
    .map(({ extra }) => ({ packages: [valid()], [`x${extra}`]: true })),
  fc.constantFrom<unknown>({ packages: [] }, { packages: {} }, { packages: null }, {}, [], 'text', 42, null),
  fc
    .jsonValue()
    .filter((v) => !(typeof v === 'object' && v !== null && !Array.isArray(v) && 'packages' in v)),
);

test('10,000+ generated bad requests: never a 5xx, always the envelope, and no state changes', async () => {
  const before = await stateFingerprint();
  const bodies = fc.sample(badBody, { numRuns: 9_000, seed: 20261125 });
  const raw = fc.sample(
    fc.oneof(
      fc.string().map((s) => ({ type: 'application/json', text: `{"packages": [${s}` })),
      fc.string().map((s) => ({ type: 'text/plain', text: s })),
      fc.constantFrom(
        { type: 'application/x-www-form-urlencoded', text: 'packages=1' },
        { type: 'application/json; charset=utf-16', text: '{}' },
        { type: 'application/json', text: '' },
      ),
    ),
    { numRuns: 1_200, seed: 7 },
  );
  const requests = [...bodies.map((b) => ({ type: 'application/json', text: JSON.stringify(b) })), ...raw];
  expect(requests.length).toBeGreaterThanOrEqual(10_000);

  const failures: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < requests.length) {
        const r = requests[next++] as { type: string; text: string };
        const res = await fetch(`${server.url}/v1/packages/check`, {
          method: 'POST',
          headers: { 'content-type': r.type },
          body: r.text,
        });
        const body = (await res.json().catch(() => null)) as Envelope | null;
        const ok =
          [400, 413, 415].includes(res.status) &&
          typeof body?.error?.code === 'string' &&
          typeof body.error.message === 'string' &&
          Array.isArray(body.error.details) &&
          !JSON.stringify(body).includes('    at ');
        if (!ok)
          failures.push(
            `${res.status} ${r.type} ${r.text.slice(0, 120)} -> ${JSON.stringify(body).slice(0, 200)}`,
          );
      }
    }),
  );
  expect(failures.slice(0, 5)).toEqual([]);
  expect(await stateFingerprint()).toBe(before);
  // ~10 s alone; a generous bound because CI's two cores may be busy with other work.
}, 180_000);

/** How a hostile body is packed: compressed, truncated, mislabelled, or random bytes. */
const encodedBody = fc.oneof(
  fc.record({ body: badBody, enc: fc.constantFrom('gzip', 'deflate', 'br') }).map(({ body, enc }) => ({
    encoding: enc,
    bytes: zip(enc, Buffer.from(JSON.stringify(body))),
  })),
  // A valid body's compression cut short: it never inflates to the whole body.
  fc
    .record({ enc: fc.constantFrom('gzip', 'deflate', 'br'), cut: fc.integer({ min: 1, max: 40 }) })
    .map(({ enc, cut }) => {
      const whole = zip(enc, Buffer.from(JSON.stringify({ packages: [valid(), valid()] })));
      return { encoding: enc, bytes: whole.subarray(0, Math.max(0, whole.length - cut)) };
    }),
  fc.record({
    encoding: fc.oneof(
      fc.constantFrom(
        'gzip',
        'deflate',
        'br',
        'compress',
        'x-gzip',
        'gzip, gzip',
        'GZIP',
        'identity, br',
        '*',
      ),
      fc.string({ maxLength: 20 }).filter((e) => /^[\x21-\x7e]*$/.test(e)),
    ),
    bytes: fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)),
  }),
);

function zip(encoding: string, raw: Buffer): Buffer {
  return encoding === 'gzip' ? gzipSync(raw) : encoding === 'br' ? brotliCompressSync(raw) : deflateSync(raw);
}

/** The raw request over node:http: fetch cannot send a Content-Encoding it would not check. */
function sendEncoded(encoding: string, bytes: Buffer): Promise<{ status: number; text: string }> {
  const url = new URL(server.url);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        method: 'POST',
        path: '/v1/packages/check',
        headers: { 'content-type': 'application/json', 'content-encoding': encoding },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      },
    );
    req.on('error', reject);
    req.end(bytes);
  });
}

test('1,500 hostile encoded bodies (compressed bad bodies, truncated streams, unknown or garbled Content-Encoding, random bytes): 400/413/415 in the envelope, never a 5xx, no state change', async () => {
  const before = await stateFingerprint();
  const cases = fc.sample(encodedBody, { numRuns: 1_500, seed: 20261202 });
  const failures: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < cases.length) {
        const c = cases[next++] as { encoding: string; bytes: Buffer };
        const res = await sendEncoded(c.encoding, c.bytes);
        let body: Envelope | null = null;
        try {
          body = JSON.parse(res.text) as Envelope;
        } catch {
          // not JSON: reported below
        }
        const ok =
          [400, 413, 415].includes(res.status) &&
          typeof body?.error?.code === 'string' &&
          Array.isArray(body.error.details) &&
          !res.text.includes('    at ');
        if (!ok) failures.push(`${res.status} ${JSON.stringify(c.encoding)} -> ${res.text.slice(0, 200)}`);
      }
    }),
  );
  expect(failures.slice(0, 5)).toEqual([]);
  expect(await stateFingerprint()).toBe(before);
}, 120_000);

/** Signer evaluation bodies invalid by construction: a valid one with one field broken, or junk. */
const badSignerBody = fc.oneof(
  fc
    .record({
      field: fc.constantFrom('signature', 'verdict', 'source', 'threatIndex'),
      at: fc.nat(5),
      n: fc.integer({ min: 1, max: 6 }),
      signature: badSignature,
      verdict: fc.oneof(fc.string(), fc.constantFrom<unknown>(null, 1, 'Malicious', ['safe'])),
      source: fc.oneof(fc.string(), fc.constantFrom<unknown>(null, true, 'MANUAL')),
      threatIndex: fc.oneof(
        fc.double({ min: 1.0000001, noNaN: true }),
        fc.double({ max: -0.0000001, noNaN: true }),
        fc.constantFrom<unknown>(1e-50, '0.5', null, Number.NaN),
      ),
    })
    .filter(({ field, verdict, source }) => {
      if (field === 'verdict') return !['safe', 'malicious', 'suspicious'].includes(verdict as string);
      if (field === 'source') return !['manual', 'model'].includes(source as string);
      return true;
    })
    .map(({ field, at, n, ...bad }) => {
      const evaluations = Array.from({ length: n }, (): Record<string, unknown> => ({
        signature: valid().signature,
        verdict: 'malicious',
        source: 'manual',
        threatIndex: 1,
      }));
      const i = at % n;
      evaluations[i] = { ...evaluations[i], [field]: bad[field as keyof typeof bad] };
      return { evaluations } as unknown;
    }),
  fc.record({ extra: fc.string({ minLength: 1, maxLength: 8 }) }).map(({ extra }) => ({
    evaluations: [
      { signature: valid().signature, verdict: 'safe', source: 'model', threatIndex: 0, [`x${extra}`]: 1 },
    ],
  })),
  fc.constantFrom<unknown>(
    { evaluations: [] },
    { evaluations: {} },
    { evaluations: null },
    {},
    [],
    'text',
    42,
    null,
  ),
  fc
    .jsonValue()
    .filter((v) => !(typeof v === 'object' && v !== null && !Array.isArray(v) && 'evaluations' in v)),
);

test('2,000 generated bad signer evaluations: never a 5xx, always the envelope, and no verdict stored', async () => {
  const signerState = async () =>
    JSON.stringify(
      (
        await ctx.db.pool.query(
          'SELECT (SELECT count(*) FROM signer_evaluations) AS e, (SELECT count(*) FROM signers) AS s',
        )
      ).rows,
    );
  const before = await signerState();
  const goodBody = JSON.stringify({
    evaluations: [{ signature: valid().signature, verdict: 'safe', source: 'model', threatIndex: 0 }],
  });
  const requests = [
    ...fc
      .sample(badSignerBody, { numRuns: 1_900, seed: 20261202 })
      .map((b) => ({ text: JSON.stringify(b), actor: undefined as string | undefined })),
    // A valid body with a malformed X-Actor is refused too.
    ...fc
      .sample(
        fc
          .string({ minLength: 1, maxLength: 80 })
          .filter((a) => a.trim() === a && !/^[A-Za-z0-9._@-]{1,64}$/.test(a) && /^[\x21-\x7e ]+$/.test(a)),
        { numRuns: 100, seed: 3 },
      )
      .map((actor) => ({ text: goodBody, actor })),
  ];
  const failures: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < requests.length) {
        const r = requests[next++] as { text: string; actor?: string };
        const headers: Record<string, string> = {
          'content-type': 'application/json',
          authorization: `Bearer ${TOKEN}`,
        };
        if (r.actor !== undefined) headers['x-actor'] = r.actor;
        const res = await fetch(`${server.url}/v1/admin/signer-evaluations`, {
          method: 'POST',
          headers,
          body: r.text,
        });
        const body = (await res.json().catch(() => null)) as Envelope | null;
        const ok =
          [400, 413, 415].includes(res.status) &&
          typeof body?.error?.code === 'string' &&
          Array.isArray(body.error.details) &&
          body.error.details.length > 0 &&
          !JSON.stringify(body).includes('    at ');
        if (!ok)
          failures.push(
            `${res.status} ${r.actor ?? ''} ${r.text.slice(0, 120)} -> ${JSON.stringify(body).slice(0, 200)}`,
          );
      }
    }),
  );
  expect(failures.slice(0, 5)).toEqual([]);
  expect(await signerState()).toBe(before);
}, 120_000);

test('valid edge cases are accepted: 1,000 packages, 255-character names, versions 0 and 2^53-1, duplicates, upper-case signatures', async () => {
  const edge = [
    { name: `a.${'b'.repeat(253)}`, versionCode: 0, signature: 'A'.repeat(64) },
    { name: 'z.z', versionCode: Number.MAX_SAFE_INTEGER, signature: 'f'.repeat(64) },
  ];
  const packages = [...edge, ...pkgs(0, 996, 'edge'), edge[0], edge[1]];
  expect(packages).toHaveLength(1000);
  const res = await server.request('POST', '/v1/packages/check', { packages });
  expect(res.status).toBe(200);
  const results = (
    res.body as { results: { name: string; versionCode: number; signature: string; pending: boolean }[] }
  ).results;
  expect(results).toHaveLength(1000);
  expect(results[0]).toMatchObject({
    name: edge[0]!.name,
    versionCode: 0,
    signature: 'a'.repeat(64),
    pending: true,
  });
  expect(results[1]).toMatchObject({ versionCode: Number.MAX_SAFE_INTEGER, pending: true });
  expect(results[998]).toEqual(results[0]);
});

test('generated hostile query strings on the verdict feed: 400 listing exactly the bad fields, never a 5xx', async () => {
  const auth = { authorization: `Bearer ${TOKEN}` };
  const goodCursor = Buffer.from('vc1:7').toString('base64url');
  const badCursor = fc.oneof(
    fc.string({ maxLength: 60 }),
    fc.constantFrom(
      '',
      "' OR 1=1 --",
      Buffer.from('vc1:-1').toString('base64url'),
      Buffer.from('vc1:99999999999999999999').toString('base64url'),
      Buffer.from('vc1:1; DROP TABLE verdict_changes').toString('base64url'),
      `${goodCursor}==`,
      'A'.repeat(5000),
    ),
  );
  const badLimit = fc.oneof(
    fc.string({ maxLength: 12 }),
    fc.constantFrom('0', '-1', '1001', '1e3', '1.5', '0x10', ' 5', '99999999999999999999', 'NaN', ''),
  );
  const cases = fc.sample(
    fc.record({
      after: fc.option(badCursor, { nil: undefined }),
      limit: fc.option(badLimit, { nil: undefined }),
      extra: fc.option(fc.string({ minLength: 1, maxLength: 8 }), { nil: undefined }),
      repeat: fc.boolean(),
    }),
    { numRuns: 1500, seed: 20261202 },
  );
  const failures: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < cases.length) {
        const c = cases[next++] as (typeof cases)[number];
        const q = new URLSearchParams();
        if (c.after !== undefined) q.append('after', c.after);
        if (c.limit !== undefined) q.append('limit', c.limit);
        if (c.extra !== undefined) q.append(`x${c.extra}`, '1');
        // A repeated parameter arrives as an array: bad whatever its values.
        if (c.repeat) q.append('limit', '5');
        const res = await fetch(`${server.url}/v1/admin/verdict-changes?${q.toString()}`, { headers: auth });
        const body = (await res.json().catch(() => null)) as Envelope | { changes: unknown[] } | null;
        const limits = [...(c.limit === undefined ? [] : [c.limit]), ...(c.repeat ? ['5'] : [])];
        const limitBad =
          limits.length > 1 ||
          (limits.length === 1 &&
            !(/^[0-9]{1,4}$/.test(limits[0]!) && +limits[0]! >= 1 && +limits[0]! <= 1000));
        const cursorOk = c.after !== undefined && c.after === goodCursor;
        const expected = [
          ...(c.after !== undefined && !cursorOk ? ['after'] : []),
          ...(limitBad ? ['limit'] : []),
          ...(c.extra !== undefined ? [`x${c.extra}`] : []),
        ].sort();
        const got =
          res.status === 400 && body && 'error' in body ? body.error.details.map((d) => d.path).sort() : null;
        const ok =
          expected.length === 0 ? res.status === 200 : JSON.stringify(got) === JSON.stringify(expected);
        if (!ok)
          failures.push(
            `${q.toString().slice(0, 120)} -> ${res.status} ${JSON.stringify(body).slice(0, 200)}`,
          );
      }
    }),
  );
  expect(failures.slice(0, 5)).toEqual([]);
}, 120_000);

test('injection-shaped input is refused by validation and never reaches SQL', async () => {
  const res = await server.request('POST', '/v1/packages/check', {
    packages: [{ name: "com.a'); DELETE FROM packages; --", versionCode: 1, signature: 'a'.repeat(64) }],
  });
  expect(res.status).toBe(400);
  expect((res.body as Envelope).error.details.map((d) => d.path)).toEqual(['packages[0].name']);
  const get = await server.request(
    'GET',
    `/v1/packages/${encodeURIComponent("com.a' OR '1'='1")}/1/${'a'.repeat(64)}`,
  );
  expect(get.status).toBe(400);
  const { rows } = await ctx.db.pool.query<{ n: string }>(
    "SELECT count(*) AS n FROM pg_tables WHERE tablename = 'packages'",
  );
  expect(rows[0]?.n).toBe('1');
});

test('rate limit per client is shared by every pod: 429 with Retry-After past the limit, other clients unaffected', async () => {
  const podA = await serveApp(ctx, { rateLimitPoints: 5, rateLimitWindowS: 60 });
  const podB = await serveApp(ctx, { rateLimitPoints: 5, rateLimitWindowS: 60 });
  try {
    const body = { packages: [pkg(1, 'rl')] };
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) {
      const pod = i % 2 ? podB : podA;
      statuses.push(
        (await pod.request('POST', '/v1/packages/check', body, { 'x-api-key': 'device-fleet-1' })).status,
      );
    }
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429]);
    const limited = await podA.request('POST', '/v1/packages/check', body, { 'x-api-key': 'device-fleet-1' });
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect((limited.body as Envelope).error.code).toBe('rate_limited');
    expect(
      (await podB.request('POST', '/v1/packages/check', body, { 'x-api-key': 'device-fleet-2' })).status,
    ).toBe(200);
  } finally {
    await Promise.all([podA.close(), podB.close()]);
  }
});

test('security headers are set; a dead dependency answers the 503 envelope and an unexpected failure a bare 500, neither with internals', async () => {
  const res = await fetch(`${server.url}/healthz`);
  expect(res.headers.get('x-content-type-options')).toBe('nosniff');
  expect(res.headers.get('x-powered-by')).toBeNull();

  // A Redis client that never connects: the admin buffer route cannot answer, which is an outage (503), not a bug.
  const dead = new Redis({ port: 1, lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0 });
  const broken = await serveApp(ctx, {}, { redis: dead });
  // Redis answers, but scheduling the flush throws something unexpected: that is a 500.
  const exploding = await serveApp(
    ctx,
    {},
    { requestFlush: () => Promise.reject(new Error('queue exploded at /srv/secret/path')) },
  );
  try {
    const r = await broken.request('GET', '/v1/admin/buffer', undefined, {
      authorization: `Bearer ${TOKEN}`,
    });
    expect([r.status, r.headers.get('retry-after')]).toEqual([503, String(ctx.config.retryAfterS)]);
    expect(r.body).toEqual({ error: { code: 'unavailable', message: expect.any(String), details: [] } });
    expect(JSON.stringify(r.body)).not.toMatch(/ECONNREFUSED|127\.0\.0\.1|:1\b|enableOfflineQueue|stream/i);

    const e = await exploding.request('POST', '/v1/admin/flush', undefined, {
      authorization: `Bearer ${TOKEN}`,
    });
    expect(e.status).toBe(500);
    expect(e.body).toEqual({ error: { code: 'internal', message: 'internal error', details: [] } });
  } finally {
    await Promise.all([broken.close(), exploding.close()]);
    dead.disconnect();
  }
});

test('the authorization header and API keys never reach the logs', async () => {
  let logged = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      logged += chunk.toString();
      done();
    },
  });
  const app = createApp({
    config: ctx.config,
    pool: ctx.db.pool,
    redis: ctx.redis,
    logger: createLogger({ logLevel: 'info' }, 'test', sink),
    metrics: new ApiMetrics({ defaultMetrics: false }),
  });
  const s = app.listen(0, '127.0.0.1');
  await new Promise((r) => s.once('listening', r));
  const url = `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
  await fetch(`${url}/v1/admin/buffer`, {
    headers: { authorization: `Bearer ${TOKEN}`, 'x-api-key': 'secret-device-key' },
  });
  await new Promise((r) => s.close(r));
  expect(logged).toContain('/v1/admin/buffer');
  expect(logged).not.toContain(TOKEN);
  expect(logged).not.toContain('secret-device-key');
});

test('a client that never finishes its headers is disconnected by the server', async () => {
  const app = createApp({
    config: ctx.config,
    pool: ctx.db.pool,
    redis: ctx.redis,
    logger: createLogger({ logLevel: 'silent' }, 'test'),
    metrics: new ApiMetrics({ defaultMetrics: false }),
  });
  const s = createHttpServer(app, {
    headersTimeoutMs: 300,
    requestTimeoutMs: 600,
    keepAliveTimeoutMs: 300,
    checkIntervalMs: 100,
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  try {
    const socket = connect((s.address() as AddressInfo).port, '127.0.0.1');
    const closed = new Promise<string>((resolve) => {
      let answer = '';
      socket.on('data', (d) => (answer += d.toString()));
      socket.on('close', () => resolve(answer));
    });
    socket.write('POST /v1/packages/check HTTP/1.1\r\nHost: x\r\n'); // …and never the rest
    const answer = await closed;
    expect(answer === '' || answer.startsWith('HTTP/1.1 408')).toBe(true);
  } finally {
    await new Promise((r) => s.close(r));
  }
});

test('deeply nested JSON and prototype keys are refused with 400; nothing is polluted and the server stays up', async () => {
  const before = await stateFingerprint();
  const depth = 400_000; // ~800 kB: under the 1 MB limit, far deeper than any recursive walker survives
  const nested = await fetch(`${server.url}/v1/packages/check`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: `{"packages":[${'['.repeat(depth)}${']'.repeat(depth)}]}`,
  });
  expect(nested.status).toBe(400);
  expect(((await nested.json()) as Envelope).error.details.map((d) => d.path)).toEqual(['packages[0]']);

  const proto = await fetch(`${server.url}/v1/packages/check`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: `{"packages":[{"name":"com.a.b","versionCode":1,"signature":"${'a'.repeat(64)}","__proto__":{"polluted":true}}],"constructor":{"prototype":{"polluted":true}}}`,
  });
  expect(proto.status).toBe(400);
  const paths = ((await proto.json()) as Envelope).error.details.map((d) => d.path).sort();
  expect(paths).toEqual(['constructor', 'packages[0].__proto__']);
  expect(({} as Record<string, unknown>).polluted).toBeUndefined();

  expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
  expect(await stateFingerprint()).toBe(before);
});

test('probes, metrics and the OpenAPI document ignore a body: a malformed or oversized one is not a 400 or 413', async () => {
  const get = (path: string, body: string) =>
    new Promise<number>((resolve, reject) => {
      const req = request(`${server.url}${path}`, {
        method: 'GET',
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      });
      req.on('response', (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.end(body);
    });
  for (const path of ['/healthz', '/readyz', '/metrics', '/openapi.json']) {
    expect([path, await get(path, '{"not json')]).toEqual([path, 200]);
    expect([path, await get(path, `"${'x'.repeat(1_100_000)}"`)]).toEqual([path, 200]);
  }
});
