import { packageKey, type PackageRef } from '@safepkg/core';
import {
  contextEnv,
  pkgs,
  startApp,
  startPostgresServer,
  useTestContext,
  waitFor,
  type PostgresServer,
  type RunningApp,
} from '@safepkg/testkit';
import { Pool } from 'pg';
import { auditBuffer, auditStored, setDiff } from '../src/chaos-audit';
import { postCheck } from '../src/chaos-client';

// PostgreSQL here is a private server this file crashes; Redis is the shared one (own prefix).
const ctx = useTestContext({ bufferPartitions: 4, flushIntervalMs: 100 });
let pg: PostgresServer;
let pool: Pool;
let api: RunningApp;
let flusher: RunningApp;

beforeAll(async () => {
  pg = await startPostgresServer();
  pool = new Pool({ connectionString: pg.url, max: 2 });
  pool.on('error', () => undefined);
  // A short statement timeout, as recommended for the api: it also bounds how long a check
  // waits for a frozen PostgreSQL (the second test).
  const env = contextEnv(ctx.config, {
    DATABASE_URL: pg.url,
    LOG_LEVEL: 'warn',
    FLUSH_BACKOFF_MAX_MS: '800',
    PG_STATEMENT_TIMEOUT_MS: '1000',
  });
  [api, flusher] = await Promise.all([startApp('api', env), startApp('flusher', env)]);
});

afterAll(async () => {
  await Promise.all([api?.kill('SIGTERM'), flusher?.kill('SIGTERM')]);
  await pool?.end().catch(() => undefined);
  await pg?.remove();
});

async function flusherReady(): Promise<{ status: number; checks: { postgres: boolean } }> {
  const res = await fetch(`${flusher.url}/readyz`);
  return { status: res.status, checks: ((await res.json()) as { checks: { postgres: boolean } }).checks };
}

async function flushFailures(): Promise<number> {
  const text = await (await fetch(`${flusher.url}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => l.startsWith('safepkg_flush_failures_total'))
    .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
}

test('PostgreSQL down: cache hits answered, misses unknown + pending + degraded and buffered; the flusher backs off and drains all on recovery', async () => {
  // Known before the outage, and in the cache: checked once, flushed, checked again.
  const known = pkgs(0, 40, 'pgdownknown');
  expect((await postCheck(api.url, known)).status).toBe(200);
  await waitFor(async () => (await auditStored(pool)).rows === known.length, {
    what: 'the known set to be flushed',
  });
  const warm = await postCheck(api.url, known);
  expect(warm.results.every((r) => r.known)).toBe(true);

  await pg.stop('immediate');
  const downAt = Date.now();

  // Five overlapping requests: 120 new distinct packages, each request also carrying known ones and a duplicate.
  const fresh = pkgs(0, 120, 'pgdownnew');
  const requests: PackageRef[][] = [0, 20, 40, 60, 80].map((from) => [
    ...fresh.slice(from, from + 40),
    ...known.slice(from / 4, from / 4 + 5),
    fresh[from] as PackageRef,
  ]);
  for (const body of requests) {
    // Answered (the pool's connection timeout and a refused connection turn into a degraded answer, not a hang).
    const res = await postCheck(api.url, body);
    expect(res.status).toBe(200);
    expect(res.degraded).toBe(true);
    expect(res.results.map(packageKey)).toEqual(body.map(packageKey));
    const knownKeys = new Set(known.map(packageKey));
    for (const r of res.results) {
      if (knownKeys.has(packageKey(r))) expect(r).toMatchObject({ known: true, pending: false });
      else expect(r).toMatchObject({ status: 'unknown', known: false, pending: true });
    }
  }

  const buffered = await auditBuffer(ctx.redis, ctx.keys, ctx.config.bufferPartitions);
  expect(setDiff(fresh.map(packageKey), buffered.pendingKeys)).toEqual({ missing: [], extra: [] });
  expect(buffered.pendingWithoutData).toEqual([]);
  expect(buffered.dataWithoutPending).toEqual([]);

  // The flusher fails its ticks, keeps everything buffered, and says it is not ready.
  const ready = await waitFor(
    async () => {
      const r = await flusherReady();
      return r.status === 503 ? r : null;
    },
    { what: 'flusher /readyz to fail' },
  );
  expect(ready.checks.postgres).toBe(false);
  const failures = await waitFor(
    async () => {
      const n = await flushFailures();
      return n >= 3 ? n : null;
    },
    { what: 'several failed flush ticks' },
  );
  expect(failures).toBeGreaterThanOrEqual(3);
  expect((await auditBuffer(ctx.redis, ctx.keys, ctx.config.bufferPartitions)).pending).toBe(fresh.length);

  await pg.start();
  await waitFor(
    async () =>
      (await auditBuffer(ctx.redis, ctx.keys, ctx.config.bufferPartitions)).pending === 0 &&
      (await auditStored(pool)).rows === 160,
    { timeoutMs: 30000, intervalMs: 200, what: 'the buffer to drain after PostgreSQL returns' },
  );
  const stored = await auditStored(pool);
  expect(setDiff([...known, ...fresh].map(packageKey), stored.stored)).toEqual({ missing: [], extra: [] });
  expect(stored).toMatchObject({ rows: 160, queued: 160, queuedDistinct: 160, orphans: 0 });
  // first_seen_at is when a device reported the package, during the outage, not the flush time.
  const late = await pool.query<{ n: string }>(
    `SELECT count(*) AS n FROM packages WHERE name LIKE 'com.pgdownnew.%' AND first_seen_at > $1`,
    [new Date(downAt + 60_000)],
  );
  expect(Number(late.rows[0]?.n)).toBe(0);
  await waitFor(async () => (await flusherReady()).status === 200, { what: 'flusher /readyz to recover' });

  const after = await postCheck(api.url, fresh);
  expect(after.degraded).toBe(false);
  expect(after.results.every((r) => r.known && !r.pending)).toBe(true);
});

test('PostgreSQL frozen (SIGSTOP: sockets open, no answers): checks still answer, degraded, and nothing is lost', async () => {
  const fresh = pkgs(0, 30, 'pgfrozen');
  await pg.freeze();
  try {
    for (const body of [fresh.slice(0, 20), fresh.slice(10, 30)]) {
      // Answered at all: only the pool's client-side timeouts can end a wait on a frozen server.
      const res = await postCheck(api.url, body);
      expect(res.status).toBe(200);
      expect(res.degraded).toBe(true);
      expect(res.results.every((r) => r.pending && !r.known)).toBe(true);
    }
  } finally {
    await pg.thaw();
  }
  await waitFor(
    async () => {
      const stored = await auditStored(pool);
      return (
        fresh.every((p) => stored.stored.has(packageKey(p))) &&
        (await auditBuffer(ctx.redis, ctx.keys, ctx.config.bufferPartitions)).pending === 0
      );
    },
    { timeoutMs: 30000, intervalMs: 200, what: 'the buffer to drain after PostgreSQL thaws' },
  );
  const stored = await auditStored(pool);
  expect(stored).toMatchObject({ queued: stored.rows, queuedDistinct: stored.rows, orphans: 0 });
});
