import { join } from 'node:path';
import { KeySchema, packageKey, RedisBuffer, type PackageRef } from '@safepkg/core';
import {
  bufferPackages,
  contextEnv,
  flushState,
  freePort,
  pkgs,
  startApp,
  startPgbouncer,
  startPostgresServer,
  startProcess,
  useTestContext,
  waitFor,
  type Pgbouncer,
  type PostgresServer,
  type RunningApp,
} from '@safepkg/testkit';
import { Pool } from 'pg';
import { postCheck } from '../src/chaos-client';

// Both apps reach a private PostgreSQL only through a real pgbouncer in transaction pooling
// mode with 2 server connections per app, so their transactions are multiplexed over
// connections that other clients' transactions used before them.
const TOKEN = 'e2e-admin-token-0123456789';
// A short lease, so that the one a killed flusher leaves expires soon.
const ctx = useTestContext({
  adminToken: TOKEN,
  bufferPartitions: 4,
  flushIntervalMs: 100,
  flushBatchSize: 200,
  lockTtlMs: 1000,
});
let pg: PostgresServer;
let bouncer: Pgbouncer;
let direct: Pool;
let podA: RunningApp;
let podB: RunningApp;
let flusher: RunningApp | undefined;
let env: NodeJS.ProcessEnv;
let flusherEnv: NodeJS.ProcessEnv;

// Server-side timeouts per app, as the README's pgbouncer.ini sets them: the apps cannot send
// them in the startup packet through pgbouncer (it would refuse the connection).
const API_TIMEOUTS = 'SET statement_timeout = 1000; SET idle_in_transaction_session_timeout = 2000';
const FLUSHER_TIMEOUTS = 'SET statement_timeout = 30000; SET idle_in_transaction_session_timeout = 60000';

beforeAll(async () => {
  pg = await startPostgresServer();
  direct = new Pool({ connectionString: pg.url, max: 3 });
  direct.on('error', () => undefined);
  bouncer = await startPgbouncer(
    [
      { alias: 'safepkg_api', port: pg.port, dbname: 'safepkg', connectQuery: API_TIMEOUTS },
      { alias: 'safepkg_flusher', port: pg.port, dbname: 'safepkg', connectQuery: FLUSHER_TIMEOUTS },
    ],
    { poolSize: 2 },
  );
  const base = contextEnv(ctx.config, {
    PG_POOLER: 'transaction',
    // Far above the pooler's 1 s: a timeout that fires is the server's, set by connect_query.
    PG_STATEMENT_TIMEOUT_MS: '20000',
    LOG_LEVEL: 'warn',
    FLUSH_BACKOFF_MAX_MS: '500',
  });
  env = { ...base, DATABASE_URL: bouncer.url('safepkg_api') };
  flusherEnv = { ...base, DATABASE_URL: bouncer.url('safepkg_flusher') };
  [podA, podB, flusher] = await Promise.all([
    startApp('api', env),
    startApp('api', env),
    startApp('flusher', flusherEnv),
  ]);
});

afterAll(async () => {
  await Promise.all([podA?.kill('SIGTERM'), podB?.kill('SIGTERM'), flusher?.kill('SIGTERM')]);
  await direct?.end().catch(() => undefined);
  await bouncer?.remove();
  await pg?.remove();
});

async function stored(namespace: string): Promise<{ rows: number; queued: number; distinct: number }> {
  const { rows } = await direct.query<{ rows: string; queued: string; distinct: string }>(
    `SELECT count(DISTINCT p.id) AS rows, count(q.package_id) AS queued, count(DISTINCT q.package_id) AS distinct
       FROM packages p LEFT JOIN analysis_queue q ON q.package_id = p.id WHERE p.name LIKE $1`,
    [`com.${namespace}.%`],
  );
  const r = rows[0] as { rows: string; queued: string; distinct: string };
  return { rows: Number(r.rows), queued: Number(r.queued), distinct: Number(r.distinct) };
}

async function admin(
  pod: RunningApp,
  path: string,
  body: unknown,
): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${pod.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

test("a server connection still holding an older flusher's staging table (other columns) does not break the flush", async () => {
  // Both of the flusher pool's server connections get a session temp table such as an older
  // flusher version left behind: two transactions at once, so each holds its own connection.
  const olds = [
    new Pool({ connectionString: bouncer.url('safepkg_flusher'), max: 1 }),
    new Pool({ connectionString: bouncer.url('safepkg_flusher'), max: 1 }),
  ];
  const clients = await Promise.all(olds.map((p) => p.connect()));
  for (const c of clients) {
    await c.query('BEGIN');
    await c.query(
      'CREATE TEMP TABLE IF NOT EXISTS flush_staging (key text, seen bigint) ON COMMIT DELETE ROWS',
    );
  }
  const backends = await Promise.all(
    clients.map(async (c) => (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid),
  );
  expect(new Set(backends).size).toBe(2);
  for (const c of clients) {
    await c.query('COMMIT');
    c.release();
  }
  await Promise.all(olds.map((p) => p.end()));
  const refs = pkgs(0, 300, 'bouncerstale');
  expect((await postCheck(podA.url, refs)).status).toBe(200);
  await waitFor(async () => (await stored('bouncerstale')).rows === refs.length, { what: 'the flush' });
  expect(await stored('bouncerstale')).toEqual({ rows: 300, queued: 300, distinct: 300 });
});

test('round trip through the pooler: concurrent checks from two pods, flushed by COPY into the staging table, answered known; queued once each', async () => {
  const refs = pkgs(0, 3000, 'bouncerround');
  // Overlapping requests from both pods at once: many transactions over 2 server connections.
  const bodies = Array.from({ length: 14 }, (_, i) => refs.slice(i * 200, i * 200 + 600));
  const answers = await Promise.all(bodies.map((b, i) => postCheck((i % 2 ? podA : podB).url, b)));
  for (const a of answers) expect(a).toMatchObject({ status: 200, degraded: false });
  await waitFor(async () => (await stored('bouncerround')).rows === refs.length, {
    timeoutMs: 60000,
    what: 'the flush through the pooler',
  });
  // Named prepared statements would fail here on a server connection that never saw them.
  for (let i = 0; i < 6; i++) {
    const res = await postCheck((i % 2 ? podA : podB).url, refs.slice(i * 500, i * 500 + 500));
    expect(res).toMatchObject({ status: 200, degraded: false });
    expect(res.results.every((r) => r.known && !r.pending)).toBe(true);
  }
  expect(await stored('bouncerround')).toEqual({ rows: 3000, queued: 3000, distinct: 3000 });
  const servers = await bouncer.show('pools');
  const pools = servers.filter((p) => String(p.database).startsWith('safepkg_'));
  expect(pools.map((p) => p.pool_mode)).toEqual(['transaction', 'transaction']);
});

test('evaluations and claims through the pooler: claims hand each package out once, verdicts answered by the other pod', async () => {
  const refs = pkgs(0, 100, 'bouncereval');
  expect((await postCheck(podA.url, refs)).status).toBe(200);
  await waitFor(async () => (await stored('bouncereval')).rows === refs.length, { what: 'the flush' });
  const claims = await Promise.all(
    [podA, podB, podA, podB].map((pod) => admin(pod, '/v1/admin/analysis/claim', { limit: 40 })),
  );
  const claimed = claims.flatMap((c) => {
    expect(c.status).toBe(200);
    return (c.body as { packages: PackageRef[] }).packages.map(packageKey);
  });
  // Earlier tests' packages are queued too; none may be handed out twice.
  expect(new Set(claimed).size).toBe(claimed.length);
  const evaluations = refs.map((r, i) => ({
    ...r,
    verdict: i % 2 ? 'malicious' : 'safe',
    source: 'manual',
    threatIndex: 0.5,
  }));
  expect(await admin(podB, '/v1/admin/evaluations', { evaluations })).toEqual({
    status: 200,
    body: { accepted: 100 },
  });
  const res = await postCheck(podA.url, refs);
  expect(res.results.map((r) => r.status)).toEqual(refs.map((_, i) => (i % 2 ? 'malicious' : 'safe')));
  const { rows } = await direct.query<{ n: string }>(
    `SELECT count(*) AS n FROM analysis_queue q JOIN packages p ON p.id = q.package_id WHERE p.name LIKE 'com.bouncereval.%'`,
  );
  // An evaluation removes its package from the queue.
  expect(rows[0]).toEqual({ n: '0' });
});

test("statement_timeout holds through the pooler: the server cancels the api's blocked lookup after the pooler's 1 s, and the check answers degraded", async () => {
  const refs = pkgs(0, 5, 'bouncertimeout');
  const locker = await direct.connect();
  try {
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE packages IN ACCESS EXCLUSIVE MODE');
    const res = await postCheck(podA.url, refs);
    expect(res).toMatchObject({ status: 200, degraded: true });
    expect(res.results.every((r) => !r.known && r.pending)).toBe(true);
  } finally {
    await locker.query('ROLLBACK');
    locker.release();
  }
  expect(await pg.log()).toContain('canceling statement due to statement timeout');
});

test('flusher killed (-9) after a commit through the pooler: a new flusher finishes, nothing lost, each package queued once', async () => {
  const keys = new KeySchema(ctx.config.keyPrefix);
  // Nothing left from earlier tests, so the crash point's count is this test's rounds only.
  await waitFor(
    async () => (await flushState(direct, ctx.redis, keys, ctx.config.bufferPartitions)).pending === 0,
    {
      what: 'an empty buffer',
    },
  );
  await flusher?.kill('SIGTERM');
  flusher = undefined;
  const buffer = new RedisBuffer(ctx.redis, keys, ctx.config.bufferPartitions, ctx.config.maxBufferDepth);
  await bufferPackages(buffer, 1000, 'bouncercrash');
  const crashing = startProcess(
    process.execPath,
    [join(__dirname, '..', '..', 'apps', 'flusher', 'dist', 'main.js')],
    {
      ...flusherEnv,
      FLUSHER_PORT: String(await freePort()),
      SAFEPKG_TEST_CRASH_AT: 'after-commit:2',
    },
  );
  expect(await crashing.exited).toEqual({ code: null, signal: 'SIGKILL' });
  const left = await stored('bouncercrash');
  // Two rounds of 200 committed, the second not confirmed: those 200 are stored and still pending.
  expect(left.rows).toBe(400);
  expect((await flushState(direct, ctx.redis, keys, ctx.config.bufferPartitions)).pending).toBe(800);
  flusher = await startApp('flusher', flusherEnv);
  await waitFor(
    async () => (await flushState(direct, ctx.redis, keys, ctx.config.bufferPartitions)).pending === 0,
    {
      timeoutMs: 60000,
      what: 'the new flusher to drain',
    },
  );
  expect(await stored('bouncercrash')).toEqual({ rows: 1000, queued: 1000, distinct: 1000 });
});

test('pooler down (SIGKILL): checks answer degraded from the cache and the buffer, the flusher backs off; once it is back everything drains', async () => {
  const known = pkgs(0, 20, 'bouncerdownknown');
  expect((await postCheck(podA.url, known)).status).toBe(200);
  await waitFor(async () => (await postCheck(podA.url, known)).results.every((r) => r.known), {
    what: 'the flush',
  });
  await bouncer.kill();
  const fresh = pkgs(0, 50, 'bouncerdownnew');
  const res = await postCheck(podB.url, [...known, ...fresh]);
  expect(res).toMatchObject({ status: 200, degraded: true });
  expect(res.results.slice(0, 20).every((r) => r.known)).toBe(true);
  expect(res.results.slice(20).every((r) => !r.known && r.pending)).toBe(true);
  await waitFor(async () => (await fetch(`${(flusher as RunningApp).url}/readyz`)).status === 503, {
    what: 'the flusher to report not ready',
  });
  await bouncer.start();
  await waitFor(async () => (await stored('bouncerdownnew')).rows === fresh.length, {
    timeoutMs: 60000,
    what: 'the drain after the pooler returns',
  });
  expect(await stored('bouncerdownnew')).toEqual({ rows: 50, queued: 50, distinct: 50 });
  const after = await postCheck(podB.url, fresh);
  expect(after).toMatchObject({ status: 200, degraded: false });
  expect(after.results.every((r) => r.known)).toBe(true);
});
