import { RedisBuffer } from '@safepkg/core';
import {
  contextEnv,
  parseMetrics,
  pkgs,
  startApp,
  useTestContext,
  waitFor,
  type MetricSample,
  type RunningApp,
} from '@safepkg/testkit';
import { check } from '../src/roundtrip';

const ctx = useTestContext({
  bufferPartitions: 4,
  flushIntervalMs: 200,
  adminToken: 'metrics-e2e-admin-token-0123',
});
let api: RunningApp;
let flusher: RunningApp;
const startedAt = Date.now();

beforeAll(async () => {
  const env = contextEnv(ctx.config, { LOG_LEVEL: 'warn' });
  [api, flusher] = await Promise.all([startApp('api', env), startApp('flusher', env)]);
});

afterAll(async () => {
  await Promise.all([api?.kill('SIGTERM'), flusher?.kill('SIGTERM')]);
});

type Sample = MetricSample;

async function scrape(url: string): Promise<Sample[]> {
  const res = await fetch(`${url}/metrics`);
  expect(res.status).toBe(200);
  return parseMetrics(await res.text());
}

const series = (samples: Sample[], name: string, labels: Record<string, string> = {}) =>
  samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
const sum = (samples: Sample[], name: string, labels: Record<string, string> = {}) =>
  series(samples, name, labels).reduce((a, s) => a + s.value, 0);

test('after real traffic, both apps expose every operational series with the values that traffic implies', async () => {
  // A malformed entry written past the API: the flusher must dead-letter it.
  const buffer = new RedisBuffer(ctx.redis, ctx.keys, ctx.config.bufferPartitions, ctx.config.maxBufferDepth);
  await buffer.add([{ key: 'not-a-package-key', payload: { t: Date.now() } }]);

  const all = pkgs(0, 300, 'metricse2e');
  for (let i = 0; i < 300; i += 100) expect(await check(api.url, all.slice(i, i + 100))).toHaveLength(100);

  // Drained: every partition's depth gauge back to 0, all 300 rows flushed, the poison dead-lettered.
  const flushed = await waitFor(
    async () => {
      const s = await scrape(flusher.url);
      const partitions = series(s, 'safepkg_buffer_depth');
      const drained = partitions.length === 4 && partitions.every((p) => p.value === 0);
      return (
        drained &&
        sum(s, 'safepkg_flush_new_rows_total') === 300 &&
        sum(s, 'safepkg_buffer_dead_letters') === 1 &&
        s
      );
    },
    { timeoutMs: 30000, intervalMs: 200, what: 'the flusher to drain the buffer and report it' },
  );
  expect(sum(flushed, 'safepkg_flush_rows_total')).toBe(300);
  expect(sum(flushed, 'safepkg_flush_dead_letters_total')).toBe(1);
  expect(sum(flushed, 'safepkg_flush_batch_duration_seconds_count')).toBeGreaterThanOrEqual(1);
  expect(sum(flushed, 'safepkg_flush_batch_duration_seconds_sum')).toBeGreaterThan(0);
  expect(sum(flushed, 'safepkg_flush_lease_losses_total')).toBe(0);
  expect(
    series(flushed, 'safepkg_flush_failures_total')
      .map((s) => [s.labels.reason, s.value])
      .sort(),
  ).toEqual([
    ['lease_lost', 0],
    ['unavailable', 0],
  ]);
  expect(
    series(flushed, 'safepkg_buffer_oldest_pending_age_seconds')
      .map((s) => s.labels.partition)
      .sort(),
  ).toEqual(['0', '1', '2', '3']);
  expect(sum(flushed, 'safepkg_buffer_oldest_pending_age_seconds')).toBe(0);
  const lastSuccess = sum(flushed, 'safepkg_flush_last_success_timestamp_seconds');
  expect(lastSuccess * 1000).toBeGreaterThanOrEqual(startedAt);
  expect(lastSuccess * 1000).toBeLessThanOrEqual(Date.now());
  expect(sum(flushed, 'process_resident_memory_bytes')).toBeGreaterThan(0);

  // Stored now: the first check of 100 reads PostgreSQL (misses, cache filled), the second hits the cache.
  await check(api.url, all.slice(0, 100));
  const again = await check(api.url, all.slice(0, 100));
  expect(again.every((r) => r.known && !r.pending)).toBe(true);

  const s = await scrape(api.url);
  expect(sum(s, 'safepkg_checks_total', { outcome: 'ok' })).toBe(5);
  expect(sum(s, 'safepkg_checks_total', { outcome: 'degraded' })).toBe(0);
  expect(sum(s, 'safepkg_checked_packages_total', { status: 'unknown' })).toBe(500);
  expect(sum(s, 'safepkg_cache_lookups_total', { result: 'miss' })).toBe(400);
  expect(sum(s, 'safepkg_cache_lookups_total', { result: 'hit' })).toBe(100);
  expect(sum(s, 'safepkg_buffer_adds_total', { result: 'new' })).toBe(300);
  expect(sum(s, 'safepkg_buffer_adds_total', { result: 'buffer_full' })).toBe(0);
  expect(
    series(s, 'safepkg_degraded_answers_total')
      .map((x) => x.labels.dependency)
      .sort(),
  ).toEqual(['postgres', 'redis']);
  expect(
    sum(s, 'safepkg_http_request_duration_seconds_count', {
      route: '/v1/packages/check',
      code: '200',
      method: 'POST',
    }),
  ).toBe(5);
  expect(
    sum(s, 'safepkg_http_request_duration_seconds_bucket', { route: '/v1/packages/check', le: '+Inf' }),
  ).toBe(5);
  expect(sum(s, 'process_resident_memory_bytes')).toBeGreaterThan(0);

  // Both ready: the flusher has ticked, both dependencies answer.
  const [apiReady, flusherReady] = await Promise.all([
    fetch(`${api.url}/readyz`),
    fetch(`${flusher.url}/readyz`),
  ]);
  expect([apiReady.status, await apiReady.json()]).toEqual([
    200,
    { status: 'ready', checks: { postgres: true, redis: true } },
  ]);
  expect(flusherReady.status).toBe(200);
  expect(await flusherReady.json()).toMatchObject({
    status: 'ready',
    checks: { postgres: true, redis: true, recentTick: true },
  });
});
