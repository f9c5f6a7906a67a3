import { request } from 'node:http';
import { brotliCompressSync, brotliDecompressSync, deflateSync, gunzipSync, gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { Redis } from 'ioredis';
import { PackageStore } from '@safepkg/core';
import { freePort, pkg, pkgs, useTestContext } from '@safepkg/testkit';
import { AnswerTtl } from '../src/answer-ttl';
import { ApiMetrics } from '../src/metrics';
import { serveApp, type TestServer } from './helpers';

const TOKEN = 'wire-admin-token-0123456789';
const ctx = useTestContext({ adminToken: TOKEN });
const TTLS = { answerTtlUnknownS: 11, answerTtlSafeS: 44, answerTtlSuspiciousS: 22, answerTtlMaliciousS: 33 };
let server: TestServer;
beforeAll(async () => {
  server = await serveApp(ctx, TTLS);
});
afterAll(() => server.close());

interface Raw {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  bytes: Buffer;
}

/** One request with exactly these headers and body bytes; the answer's bytes as sent (fetch would inflate them). */
function raw(method: string, path: string, headers: Record<string, string>, body?: Buffer): Promise<Raw> {
  const url = new URL(server.url);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: url.hostname, port: url.port, method, path, headers: { ...headers, connection: 'close' } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, bytes: Buffer.concat(chunks) }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const checkBody = (n: number, ns = 'wire') => Buffer.from(JSON.stringify({ packages: pkgs(0, n, ns) }));
const post = (headers: Record<string, string>, body: Buffer) =>
  raw('POST', '/v1/packages/check', { 'content-type': 'application/json', ...headers }, body);

function decode(r: Raw): unknown {
  const enc = r.headers['content-encoding'];
  const plain = enc === 'gzip' ? gunzipSync(r.bytes) : enc === 'br' ? brotliDecompressSync(r.bytes) : r.bytes;
  return JSON.parse(plain.toString('utf8'));
}

interface Result {
  name: string;
  status: string;
  cacheTtlS: number;
}

describe('cacheTtlS', () => {
  test('each result carries the lifetime of its status; the POST answer is no-store, a GET one private max-age', async () => {
    const refs = pkgs(0, 5, 'ttl');
    await new PackageStore(ctx.db.pool).insertBatch(
      refs.slice(0, 4).map((ref) => ({ ref, firstSeenAt: new Date() })),
    );
    const verdicts = (['safe', 'suspicious', 'malicious'] as const).map((verdict, i) => ({
      ...refs[i],
      verdict,
      source: 'manual',
      threatIndex: i / 4,
    }));
    const posted = await server.request(
      'POST',
      '/v1/admin/evaluations',
      { evaluations: verdicts },
      { authorization: `Bearer ${TOKEN}`, 'x-actor': 'wire' },
    );
    expect(posted.status).toBe(200);

    const res = await server.request('POST', '/v1/packages/check', { packages: refs });
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    // refs[3] is stored without a verdict, refs[4] never seen (now pending): both unknown.
    expect((res.body as { results: Result[] }).results.map((r) => [r.status, r.cacheTtlS])).toEqual([
      ['safe', 44],
      ['suspicious', 22],
      ['malicious', 33],
      ['unknown', 11],
      ['unknown', 11],
    ]);

    for (const [i, status, ttl] of [
      [0, 'safe', 44],
      [2, 'malicious', 33],
      [4, 'unknown', 11],
    ] as const) {
      const ref = refs[i]!;
      const one = await server.request('GET', `/v1/packages/${ref.name}/${ref.versionCode}/${ref.signature}`);
      expect([one.status, (one.body as Result).status, (one.body as Result).cacheTtlS]).toEqual([
        200,
        status,
        ttl,
      ]);
      expect(one.headers.get('cache-control')).toBe(`private, max-age=${ttl}`);
    }
    const never = pkg(99, 'ttlnever');
    const missing = await server.request(
      'GET',
      `/v1/packages/${never.name}/${never.versionCode}/${never.signature}`,
    );
    expect([missing.status, missing.headers.get('cache-control')]).toEqual([404, 'no-store']);
  });

  test('with Redis down the answer is degraded and a safe verdict read from PostgreSQL holds only the unknown lifetime', async () => {
    const ref = pkg(0, 'ttl'); // answered safe (44 s) by the test above
    const dead = new Redis({
      port: await freePort(),
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    const down = await serveApp(ctx, { ...TTLS, rateLimitPoints: 0 }, { redis: dead });
    try {
      const res = await down.request('POST', '/v1/packages/check', { packages: [ref] });
      expect(res.body).toMatchObject({ degraded: true, results: [{ status: 'safe', cacheTtlS: 11 }] });
      const one = await down.request('GET', `/v1/packages/${ref.name}/${ref.versionCode}/${ref.signature}`);
      expect(one.body).toMatchObject({ status: 'safe', degraded: true, cacheTtlS: 11 });
      expect(one.headers.get('cache-control')).toBe('private, max-age=11');
    } finally {
      await down.close();
      dead.disconnect();
    }
  });

  test('a degraded answer caps every lifetime at the unknown one', () => {
    const ttl = new AnswerTtl(TTLS);
    expect(['safe', 'suspicious', 'malicious', 'unknown'].map((s) => ttl.of(s as 'safe', false))).toEqual([
      44, 22, 33, 11,
    ]);
    expect(['safe', 'suspicious', 'malicious', 'unknown'].map((s) => ttl.of(s as 'safe', true))).toEqual([
      11, 11, 11, 11,
    ]);
    // An unknown lifetime longer than a verdict's caps nothing below it.
    expect(new AnswerTtl({ ...TTLS, answerTtlUnknownS: 30 }).of('suspicious', true)).toBe(22);
  });
});

describe('compressed answers', () => {
  const body = checkBody(50);

  test.each([
    ['gzip', 'gzip'],
    ['br', 'br'],
    ['gzip, br', 'gzip'],
    ['br, gzip', 'br'],
    ['gzip;q=0.5, br', 'br'],
    ['br;q=0, gzip', 'gzip'],
    ['*', 'gzip'],
    ['gzip;q=0', undefined],
    ['identity', undefined],
    ['gzip;q=0, br;q=0, identity;q=0', undefined],
    ['zstd, compress', undefined],
    ['', undefined],
  ])('Accept-Encoding %j is answered in %s', async (accept, expected) => {
    const res = await post(accept ? { 'accept-encoding': accept } : {}, body);
    expect(res.status).toBe(200);
    expect(res.headers['content-encoding']).toBe(expected);
    expect(String(res.headers.vary).toLowerCase()).toContain('accept-encoding');
    expect(Number(res.headers['content-length'])).toBe(res.bytes.length);
    expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
    const answer = decode(res) as { results: Result[]; degraded: boolean };
    expect(answer.results.map((r) => r.name)).toEqual(pkgs(0, 50, 'wire').map((r) => r.name));
  });

  test('300 generated Accept-Encoding values (garbled q-values, odd tokens, long lists): always 200, in an offered encoding, decodable', async () => {
    const values = fc.sample(
      fc.oneof(
        fc.string({ maxLength: 60 }).filter((v) => /^[\x20-\x7e]*$/.test(v.trim()) && v.trim() === v),
        fc
          .array(
            fc.record({
              token: fc.constantFrom('gzip', 'br', 'identity', '*', 'deflate', 'zstd', 'GZIP', 'x', ''),
              q: fc.constantFrom('', ';q=0', ';q=1', ';q=0.5', ';q=2', ';q=-1', ';q=abc', ';q=', ';level=9'),
            }),
            { maxLength: 30 },
          )
          .map((items) => items.map((i) => `${i.token}${i.q}`).join(', ')),
      ),
      { numRuns: 300, seed: 15 },
    );
    const failures: string[] = [];
    for (const accept of values) {
      const res = await post({ 'accept-encoding': accept }, body);
      const enc = res.headers['content-encoding'];
      let decoded = false;
      try {
        decoded = Array.isArray((decode(res) as { results?: unknown }).results);
      } catch {
        // reported below
      }
      if (res.status !== 200 || ![undefined, 'gzip', 'br'].includes(enc as string) || !decoded)
        failures.push(`${JSON.stringify(accept)} -> ${res.status} ${String(enc)}`);
    }
    expect(failures.slice(0, 5)).toEqual([]);
  }, 60_000);

  test('an answer below COMPRESS_MIN_BYTES goes uncompressed, still with Vary; errors are compressed like answers', async () => {
    const small = await post({ 'accept-encoding': 'gzip, br' }, checkBody(1, 'small'));
    expect(small.bytes.length).toBeLessThan(1024);
    expect([small.status, small.headers['content-encoding']]).toEqual([200, undefined]);
    expect(String(small.headers.vary).toLowerCase()).toContain('accept-encoding');

    const zero = await serveApp(ctx, { compressMinBytes: 0 });
    try {
      const res = await fetch(`${zero.url}/v1/packages/check`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'accept-encoding': 'gzip' },
        body: checkBody(1, 'small'),
      });
      expect(res.headers.get('content-encoding')).toBe('gzip');
    } finally {
      await zero.close();
    }

    // 200 bad packages: a 400 listing every bad field, well over the threshold.
    const bad = Buffer.from(JSON.stringify({ packages: Array.from({ length: 200 }, () => ({ name: 1 })) }));
    const refused = await post({ 'accept-encoding': 'gzip' }, bad);
    expect([refused.status, refused.headers['content-encoding']]).toEqual([400, 'gzip']);
    expect((decode(refused) as { error: { code: string } }).error.code).toBe('invalid_request');
  });

  test('bytes on the wire per answer of N packages: gzip and br cut 100 results to under a fifth', async () => {
    const sizes: Record<string, number[]> = { identity: [], gzip: [], br: [] };
    for (const n of [1, 10, 100, 1000]) {
      for (const enc of ['identity', 'gzip', 'br']) {
        const res = await post({ 'accept-encoding': enc }, checkBody(n, 'bytes'));
        expect(res.status).toBe(200);
        sizes[enc]!.push(res.bytes.length);
      }
    }
    // For the report: the same ratios hold on any machine, the answers are deterministic but for timestamps.
    process.stdout.write(`wire bytes for 1/10/100/1000 packages: ${JSON.stringify(sizes)}\n`);
    expect(sizes.gzip![2]! / sizes.identity![2]!).toBeLessThan(0.2);
    expect(sizes.br![2]!).toBeLessThanOrEqual(sizes.gzip![2]!);
    // One package stays below the threshold: identical bytes whatever is asked.
    expect(sizes.gzip![0]).toBe(sizes.identity![0]);
  });
});

test('safepkg_answer_bytes_total counts each answer before and after compression, by encoding', async () => {
  const metrics = new ApiMetrics({ defaultMetrics: false });
  const own = await serveApp(ctx, {}, { metrics });
  try {
    for (const accept of ['gzip', 'br', 'identity']) {
      const res = await fetch(`${own.url}/v1/packages/check`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'accept-encoding': accept },
        body: checkBody(50, 'metrics'),
      });
      expect(res.status).toBe(200);
      await res.arrayBuffer();
    }
    const values = (await metrics.answerBytes.get()).values;
    const bytes = (encoding: string, form: string) =>
      values.find((v) => v.labels.encoding === encoding && v.labels.form === form)?.value ?? 0;
    expect(bytes('identity', 'sent')).toBe(bytes('identity', 'raw'));
    for (const enc of ['gzip', 'br']) {
      expect(bytes(enc, 'raw')).toBeGreaterThan(10_000);
      expect(bytes(enc, 'sent')).toBeLessThan(bytes(enc, 'raw') / 3);
    }
  } finally {
    await own.close();
  }
});

describe('compressed request bodies', () => {
  test.each([
    ['gzip', gzipSync],
    ['deflate', deflateSync],
    ['br', brotliCompressSync],
  ])('a %s body is inflated and answered like the plain one', async (encoding, zip) => {
    const plain = checkBody(20, `in${encoding}`);
    const res = await post({ 'content-encoding': encoding }, zip(plain));
    expect(res.status).toBe(200);
    expect((decode(res) as { results: Result[] }).results).toHaveLength(20);
  });

  test('the 1 MB limit applies to the inflated body: a 10 MB gzip bomb of a few KB is 413', async () => {
    const bomb = gzipSync(Buffer.from(`{"packages": [${' '.repeat(10 * 1024 * 1024)}]}`), { level: 9 });
    expect(bomb.length).toBeLessThan(64 * 1024);
    const res = await post({ 'content-encoding': 'gzip' }, bomb);
    expect([res.status, (decode(res) as { error: { code: string } }).error.code]).toEqual([
      413,
      'payload_too_large',
    ]);
  });

  test('an unknown Content-Encoding is 415 unsupported_encoding; a truncated or corrupt one 400', async () => {
    for (const encoding of ['compress', 'x-unknown', 'gzip, compress']) {
      const res = await post({ 'content-encoding': encoding }, checkBody(1));
      expect([encoding, res.status, (decode(res) as { error: { code: string } }).error.code]).toEqual([
        encoding,
        415,
        'unsupported_encoding',
      ]);
    }
    const zipped = gzipSync(checkBody(20));
    for (const [encoding, bytes] of [
      ['gzip', zipped.subarray(0, zipped.length - 12)],
      ['gzip', Buffer.from('{"packages": []}')],
      ['br', Buffer.from('not brotli at all')],
      ['deflate', Buffer.from([0x78, 0x9c, 0xff, 0xff, 0x00])],
    ] as const) {
      const res = await post({ 'content-encoding': encoding }, bytes);
      const envelope = decode(res) as { error: { code: string; message: string } };
      expect([encoding, res.status, envelope.error.code, envelope.error.message]).toEqual([
        encoding,
        400,
        'invalid_request',
        'request body could not be decompressed',
      ]);
    }
  });
});
