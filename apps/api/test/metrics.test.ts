import { Pool } from 'pg';
import { freePort, parseMetrics, pkgs, useTestContext, type MetricSample } from '@safepkg/testkit';
import { ApiMetrics } from '../src/metrics';
import { serveApp, type TestServer } from './helpers';

const TOKEN = 'metrics-admin-token-0123456789';
const ctx = useTestContext({ adminToken: TOKEN, bufferPartitions: 2 });

type Sample = MetricSample;

const value = (samples: Sample[], name: string, labels: Record<string, string> = {}) =>
  samples
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((a, s) => a + s.value, 0);

let metrics: ApiMetrics;
let server: TestServer;
beforeAll(async () => {
  metrics = new ApiMetrics();
  server = await serveApp(ctx, {}, { metrics });
});
afterAll(() => server.close());

async function scrape(): Promise<{ text: string; samples: Sample[] }> {
  const res = await fetch(`${server.url}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('text/plain');
  const text = await res.text();
  return { text, samples: parseMetrics(text) };
}

test('checks, packages by status, cache hits/misses and buffer adds count what really happened', async () => {
  const batch = pkgs(0, 6, 'metricsa');
  // First check: 6 misses, 6 new in the buffer; second: the same 6 again, answered pending from
  // the buffer without a PostgreSQL lookup.
  expect((await server.request('POST', '/v1/packages/check', { packages: batch })).status).toBe(200);
  expect(
    (await server.request('POST', '/v1/packages/check', { packages: [...batch, batch[0]] })).status,
  ).toBe(200);
  // A verdict makes one package known and cached on the next check.
  const verdict = { ...batch[0]!, verdict: 'malicious', source: 'manual', threatIndex: 0.9 };
  const auth = { authorization: `Bearer ${TOKEN}` };
  expect(
    (await server.request('POST', '/v1/admin/evaluations', { evaluations: [verdict] }, auth)).status,
  ).toBe(200);
  expect((await server.request('POST', '/v1/packages/check', { packages: [batch[0]] })).status).toBe(200);

  const { samples } = await scrape();
  expect(value(samples, 'safepkg_checks_total', { outcome: 'ok' })).toBe(3);
  expect(value(samples, 'safepkg_checked_packages_total', { status: 'unknown' })).toBe(6 + 7);
  expect(value(samples, 'safepkg_checked_packages_total', { status: 'malicious' })).toBe(1);
  expect(value(samples, 'safepkg_cache_lookups_total', { result: 'hit' })).toBe(1);
  expect(value(samples, 'safepkg_cache_lookups_total', { result: 'miss' })).toBe(12);
  expect(value(samples, 'safepkg_buffer_adds_total', { result: 'new' })).toBe(6);
  expect(value(samples, 'safepkg_buffer_adds_total', { result: 'already_pending' })).toBe(0);
  expect(value(samples, 'safepkg_pending_answers_total')).toBe(6);
  // The first check's 6 only: the second found its misses in the buffer, the third hit the cache.
  expect(value(samples, 'safepkg_check_postgres_lookups_total')).toBe(6);
  // Default process metrics are on the same registry.
  expect(value(samples, 'process_cpu_user_seconds_total')).toBeGreaterThan(0);
  expect(value(samples, 'nodejs_heap_size_used_bytes')).toBeGreaterThan(0);
});

test('HTTP latency is labelled by route pattern, never by the raw URL with package names', async () => {
  const [p] = pkgs(100, 1, 'metricsroute');
  await server.request('GET', `/v1/packages/${p!.name}/${p!.versionCode}/${p!.signature}`);
  await server.request('GET', `/v1/packages/${p!.name}/${p!.versionCode}/${p!.signature.toUpperCase()}`);
  await server.request('GET', `/v1/packages/bad!name/1/x`);
  await server.request('GET', `/v1/unknown/${p!.name}`);
  await server.request('GET', '/v1/admin/buffer');

  const { text, samples } = await scrape();
  expect(text).not.toContain(p!.name);
  expect(text).not.toContain(p!.signature);
  expect(text).not.toContain('bad!name');
  const routes = new Set(
    samples
      .filter((s) => s.name === 'safepkg_http_request_duration_seconds_count')
      .map((s) => s.labels.route),
  );
  expect([...routes].sort()).toEqual(
    [
      '/metrics',
      '/v1/packages/check',
      '/v1/packages/:name/:versionCode/:signature',
      '/v1/admin/evaluations',
      'unmatched',
    ].sort(),
  );
  const byCode = (route: string, code: string) =>
    value(samples, 'safepkg_http_request_duration_seconds_count', { route, code, method: 'GET' });
  expect(byCode('/v1/packages/:name/:versionCode/:signature', '404')).toBe(2);
  expect(byCode('/v1/packages/:name/:versionCode/:signature', '400')).toBe(1);
  // Unknown routes and requests refused before routing (401 here) share one bounded label.
  expect(byCode('unmatched', '404')).toBe(1);
  expect(byCode('unmatched', '401')).toBe(1);
  expect(
    value(samples, 'safepkg_http_request_duration_seconds_bucket', {
      route: '/v1/packages/check',
      le: '+Inf',
    }),
  ).toBe(3);
});

test('degraded answers by dependency and buffer_full are counted', async () => {
  const closed = await freePort();
  const deadPool = new Pool({ connectionString: `postgres://postgres@127.0.0.1:${closed}/none` });
  deadPool.on('error', () => undefined);
  const own = new ApiMetrics({ defaultMetrics: false });
  const pgDown = await serveApp(ctx, {}, { pool: deadPool, metrics: own });
  const fullMetrics = new ApiMetrics({ defaultMetrics: false });
  const full = await serveApp(ctx, { maxBufferDepth: 1 }, { metrics: fullMetrics });
  try {
    const res = await pgDown.request('POST', '/v1/packages/check', { packages: pkgs(0, 3, 'metricsdeg') });
    expect(res.status).toBe(200);
    expect((res.body as { degraded: boolean }).degraded).toBe(true);
    const degraded = parseMetrics(await own.registry.metrics());
    expect(value(degraded, 'safepkg_degraded_answers_total', { dependency: 'postgres' })).toBe(1);
    expect(value(degraded, 'safepkg_checks_total', { outcome: 'degraded' })).toBe(1);

    const refused = await full.request('POST', '/v1/packages/check', { packages: pkgs(0, 5, 'metricsfull') });
    expect(refused.status).toBe(503);
    const fullSamples = parseMetrics(await fullMetrics.registry.metrics());
    expect(value(fullSamples, 'safepkg_buffer_adds_total', { result: 'buffer_full' })).toBe(5);
    expect(
      value(fullSamples, 'safepkg_http_request_duration_seconds_count', {
        route: '/v1/packages/check',
        code: '503',
      }),
    ).toBe(1);
  } finally {
    await Promise.all([pgDown.close(), full.close()]);
    await deadPool.end().catch(() => undefined);
  }
});
