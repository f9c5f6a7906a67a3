import { packageKey, type PackageRef } from '@safepkg/core';
import {
  contextEnv,
  flushState,
  parseMetrics,
  pkgs,
  startApp,
  startPostgresReplica,
  startPostgresServer,
  storedPackages,
  useTestContext,
  waitFor,
  type PostgresReplica,
  type PostgresServer,
  type RunningApp,
} from '@safepkg/testkit';
import { Pool } from 'pg';
import { postCheck } from '../src/chaos-client';

// A private primary with a real streaming replica (pg_basebackup -R); Redis is the shared one.
const TOKEN = 'e2e-admin-token-0123456789';
const ctx = useTestContext({ adminToken: TOKEN, bufferPartitions: 4, flushIntervalMs: 100 });
let primary: PostgresServer;
let replica: PostgresReplica;
let primaryPool: Pool;
let replicaPool: Pool;
// Pod A never counts the replica as lagging (bound 1 h), so only the verdict-LSN rule can keep
// it off a paused replica; pod B leaves it once it is 300 ms behind.
let podA: RunningApp;
let podB: RunningApp;
let flusher: RunningApp;

beforeAll(async () => {
  primary = await startPostgresServer();
  replica = await startPostgresReplica(primary);
  primaryPool = new Pool({ connectionString: primary.url, max: 2 });
  replicaPool = new Pool({ connectionString: replica.url, max: 2 });
  replicaPool.on('error', () => undefined);
  const env = contextEnv(ctx.config, {
    DATABASE_URL: primary.url,
    DATABASE_READ_URL: replica.url,
    REPLICA_POLL_INTERVAL_MS: '100',
    PG_STATEMENT_TIMEOUT_MS: '2000',
    LOG_LEVEL: 'warn',
  });
  [podA, podB, flusher] = await Promise.all([
    startApp('api', { ...env, REPLICA_MAX_LAG_MS: '3600000' }),
    startApp('api', { ...env, REPLICA_MAX_LAG_MS: '300' }),
    startApp('flusher', env),
  ]);
});

afterAll(async () => {
  await Promise.all([podA?.kill('SIGTERM'), podB?.kill('SIGTERM'), flusher?.kill('SIGTERM')]);
  await replicaPool?.end().catch(() => undefined);
  await primaryPool?.end().catch(() => undefined);
  await replica?.remove();
  await primary?.remove();
});

interface Result extends PackageRef {
  status: string;
  known: boolean;
  pending: boolean;
}

async function lookups(pod: RunningApp): Promise<{ replica: number; primary: Record<string, number> }> {
  const samples = parseMetrics(await (await fetch(`${pod.url}/metrics`)).text());
  const out = { replica: 0, primary: {} as Record<string, number> };
  for (const s of samples.filter((x) => x.name === 'safepkg_db_lookups_total')) {
    if (s.labels.target === 'primary')
      out.primary[s.labels.reason as string] = (out.primary[s.labels.reason as string] ?? 0) + s.value;
    else out.replica += s.value;
  }
  return out;
}

async function replicaGauge(pod: RunningApp, name: string): Promise<number | undefined> {
  const samples = parseMetrics(await (await fetch(`${pod.url}/metrics`)).text());
  return samples.find((s) => s.name === name)?.value;
}

async function evaluate(pod: RunningApp, refs: PackageRef[], verdict: string): Promise<void> {
  const res = await fetch(`${pod.url}/v1/admin/evaluations`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
    body: JSON.stringify({
      evaluations: refs.map((r) => ({ ...r, verdict, source: 'manual', threatIndex: 0.9 })),
    }),
  });
  expect(res.status).toBe(200);
}

async function getOne(pod: RunningApp, ref: PackageRef): Promise<{ status: number; body: Result }> {
  const res = await fetch(`${pod.url}/v1/packages/${ref.name}/${ref.versionCode}/${ref.signature}`);
  return { status: res.status, body: (await res.json()) as Result };
}

const evict = (refs: PackageRef[]) => ctx.redis.del(...refs.map((r) => ctx.keys.cache(packageKey(r))));

async function replicaVerdicts(refs: PackageRef[]): Promise<(string | null)[]> {
  const { rows } = await replicaPool.query<{ name: string; verdict: string | null }>(
    'SELECT name, verdict FROM packages WHERE name = ANY($1) ORDER BY name',
    [refs.map((r) => r.name)],
  );
  return rows.map((r) => r.verdict);
}

/** Checked, flushed, replayed on the replica: known everywhere, with no verdict yet. */
async function storedEverywhere(refs: PackageRef[]): Promise<void> {
  expect((await postCheck(podA.url, refs)).status).toBe(200);
  await waitFor(async () => (await postCheck(podA.url, refs)).results.every((r) => r.known), {
    what: 'the packages to be flushed and seen as known',
  });
  await replica.catchUp(primary);
}

test('lookups go to the replica once it has replayed the last verdict; the primary answers only what the replica cannot', async () => {
  const refs = pkgs(0, 50, 'replicaused');
  await storedEverywhere(refs);
  // The pods only trust the replica once the last verdict LSN is known (seeded by their poll).
  await waitFor(
    async () => {
      await evict(refs);
      const before = await lookups(podA);
      const res = await postCheck(podA.url, refs);
      return res.results.every((r) => r.known) && (await lookups(podA)).replica > before.replica;
    },
    { what: 'a check answered from the replica' },
  );
  const before = await lookups(podA);
  await evict(refs);
  const res = await postCheck(podA.url, refs);
  expect(res).toMatchObject({ status: 200, degraded: false });
  expect(res.results.every((r) => r.known && !r.pending)).toBe(true);
  const after = await lookups(podA);
  expect(after.replica).toBe(before.replica + 1);
  expect(after.primary).toEqual(before.primary);
  expect(await replicaGauge(podA, 'safepkg_replica_up')).toBe(1);
});

test('a verdict committed on the primary is never answered older, while replay is paused and the cache entry is evicted', async () => {
  const refs = pkgs(0, 20, 'replicastale');
  await storedEverywhere(refs);
  await replica.pauseReplay();
  try {
    // Through pod B; pod A answers. The replica still has the old status, and pod A does not
    // think it lagging (1 h bound): only the verdict LSN keeps it from answering from there.
    await evaluate(podB, refs, 'malicious');
    await evict(refs);
    expect(await replicaVerdicts(refs)).toEqual(refs.map(() => null));
    const before = await lookups(podA);
    const res = await postCheck(podA.url, refs);
    expect(res).toMatchObject({ status: 200, degraded: false });
    expect(res.results.map((r) => r.status)).toEqual(refs.map(() => 'malicious'));
    await evict(refs);
    const one = await getOne(podA, refs[0] as PackageRef);
    expect(one.status).toBe(200);
    expect(one.body.status).toBe('malicious');
    const after = await lookups(podA);
    expect(after.replica).toBe(before.replica);
    expect(after.primary.replicas_behind_verdict).toBe((before.primary.replicas_behind_verdict ?? 0) + 2);
    expect(await replicaVerdicts(refs)).toEqual(refs.map(() => null));
  } finally {
    await replica.resumeReplay();
  }
  // Replayed: the replica answers again, with the new verdict.
  await replica.catchUp(primary);
  await waitFor(
    async () => {
      await evict(refs);
      const before = await lookups(podA);
      const res = await postCheck(podA.url, refs);
      expect(res.results.map((r) => r.status)).toEqual(refs.map(() => 'malicious'));
      return (await lookups(podA)).replica > before.replica;
    },
    { what: 'pod A to use the replica again' },
  );
});

test('a signer verdict committed on the primary is never answered older, while replay is paused and the signer entry is evicted', async () => {
  const signature = 'cd'.repeat(32);
  const refs = pkgs(0, 20, 'replicasigner').map((p) => ({ ...p, signature }));
  await storedEverywhere(refs);
  await replica.pauseReplay();
  try {
    const res = await fetch(`${podB.url}/v1/admin/signer-evaluations`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
      body: JSON.stringify({
        evaluations: [{ signature, verdict: 'malicious', source: 'manual', threatIndex: 1 }],
      }),
    });
    expect(res.status).toBe(200);
    // As if both entries had expired: pod A must look the signer up, and not on the paused replica.
    await evict(refs);
    await ctx.redis.del(ctx.keys.signer(signature));
    const { rows } = await replicaPool.query('SELECT 1 FROM signers WHERE signature = $1', [signature]);
    expect(rows).toHaveLength(0);
    const before = await lookups(podA);
    const checked = await postCheck(podA.url, refs);
    expect(checked).toMatchObject({ status: 200, degraded: false });
    expect(checked.results.map((r) => r.status)).toEqual(refs.map(() => 'malicious'));
    expect((await lookups(podA)).replica).toBe(before.replica);
  } finally {
    await replica.resumeReplay();
  }
});

test('a package flushed but not yet replayed is answered known or pending, 404 only on the primary word, and queued for analysis once', async () => {
  const refs = pkgs(0, 200, 'replicaflushed');
  await replica.pauseReplay();
  try {
    const first = await postCheck(podA.url, refs);
    expect(first.results.every((r) => !r.known && r.pending)).toBe(true);
    await waitFor(
      async () => {
        const s = await storedPackages(primaryPool);
        return s.storedKeys.filter((k) => k.includes('replicaflushed')).length === refs.length;
      },
      { what: 'the flush to the primary' },
    );
    await waitFor(async () => (await flushState(primaryPool, ctx.redis, ctx.keys, 4)).pending === 0, {
      what: 'the flushed entries to be confirmed out of the buffer',
    });
    // Stored on the primary, not on the paused replica: the check's replica miss buffers them
    // again (answered pending), and GET asks the primary before it would say 404.
    const again = await postCheck(podA.url, refs);
    expect(again).toMatchObject({ status: 200, degraded: false });
    expect(again.results.every((r) => !r.known && r.pending)).toBe(true);
    const one = await getOne(podA, refs[7] as PackageRef);
    expect(one.status).toBe(200);
    expect(one.body).toMatchObject({ known: true });
    const absent = await getOne(podA, pkgs(0, 1, 'replicanever')[0] as PackageRef);
    expect(absent.status).toBe(404);
  } finally {
    await replica.resumeReplay();
  }
  // The re-buffered entries are flushed again: ON CONFLICT DO NOTHING, queued once each.
  await waitFor(async () => (await postCheck(podA.url, refs)).results.every((r) => r.known && !r.pending), {
    what: 'the second flush',
  });
  const { rows } = await primaryPool.query<{ queued: string; distinct: string; packages: string }>(
    `SELECT count(q.package_id) AS queued, count(DISTINCT q.package_id) AS distinct, count(*) AS packages
       FROM packages p LEFT JOIN analysis_queue q ON q.package_id = p.id WHERE p.name LIKE 'com.replicaflushed.%'`,
  );
  expect(rows[0]).toEqual({
    queued: String(refs.length),
    distinct: String(refs.length),
    packages: String(refs.length),
  });
});

test('a replica lagging past REPLICA_MAX_LAG_MS is left for the primary; checks keep answering, not degraded', async () => {
  const refs = pkgs(0, 30, 'replicalag');
  await storedEverywhere(refs);
  await replica.pauseReplay();
  try {
    // New WAL the paused replica receives but does not replay: its lag grows past 300 ms.
    await postCheck(podA.url, pkgs(0, 30, 'replicalagnew'));
    await waitFor(async () => (await replicaGauge(podB, 'safepkg_replica_lagging')) === 1, {
      what: 'pod B to see the replica lagging',
    });
    expect(await replicaGauge(podB, 'safepkg_replica_lag_seconds')).toBeGreaterThan(0.3);
    await evict(refs);
    const before = await lookups(podB);
    const res = await postCheck(podB.url, refs);
    expect(res).toMatchObject({ status: 200, degraded: false });
    expect(res.results.every((r) => r.known)).toBe(true);
    const after = await lookups(podB);
    expect(after.replica).toBe(before.replica);
    expect(after.primary.replicas_unhealthy).toBe((before.primary.replicas_unhealthy ?? 0) + 1);
  } finally {
    await replica.resumeReplay();
  }
  await waitFor(async () => (await replicaGauge(podB, 'safepkg_replica_lagging')) === 0, {
    what: 'pod B to see the replica caught up',
  });
});

test('a replica killed (SIGKILL) is left for the primary, checks keep answering, and it is used again once back', async () => {
  const refs = pkgs(0, 30, 'replicadown');
  await storedEverywhere(refs);
  await replica.kill();
  try {
    // Until a poll notices, a lookup may hit the dead replica: it fails over to the primary.
    for (let i = 0; i < 3; i++) {
      await evict(refs);
      const res = await postCheck(podA.url, refs);
      expect(res).toMatchObject({ status: 200, degraded: false });
      expect(res.results.every((r) => r.known)).toBe(true);
    }
    await waitFor(async () => (await replicaGauge(podA, 'safepkg_replica_up')) === 0, {
      what: 'pod A to see the replica down',
    });
    const before = await lookups(podA);
    await evict(refs);
    const res = await postCheck(podA.url, refs);
    expect(res).toMatchObject({ status: 200, degraded: false });
    const after = await lookups(podA);
    expect(after.replica).toBe(before.replica);
    expect(after.primary.replicas_unhealthy).toBe((before.primary.replicas_unhealthy ?? 0) + 1);
  } finally {
    await replica.start();
  }
  await waitFor(async () => (await replicaGauge(podA, 'safepkg_replica_up')) === 1, {
    what: 'pod A to see the replica back',
  });
  await replica.catchUp(primary);
  await waitFor(
    async () => {
      await evict(refs);
      const before = await lookups(podA);
      await postCheck(podA.url, refs);
      return (await lookups(podA)).replica > before.replica;
    },
    { what: 'pod A to use the replica again' },
  );
});

test('the last verdict LSN lost (a Redis restarted empty) is put back by the next poll at a position past every commit so far', async () => {
  const refs = pkgs(0, 10, 'replicalsnlost');
  await storedEverywhere(refs);
  await evaluate(podB, refs, 'suspicious');
  const { rows } = await primaryPool.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
  const [hi, lo] = (rows[0]?.lsn ?? '').split('/');
  const committed = (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
  await ctx.redis.del(ctx.keys.verdictLsn());
  const restored = await waitFor(async () => ctx.redis.get(ctx.keys.verdictLsn()), {
    what: 'a poll to put the verdict LSN back',
  });
  expect(BigInt(`0x${restored}`)).toBeGreaterThanOrEqual(committed);
  // Replicas are trusted again once they replay that far; the verdict is answered either way.
  await replica.catchUp(primary);
  await waitFor(
    async () => {
      await evict(refs);
      const before = await lookups(podA);
      const res = await postCheck(podA.url, refs);
      expect(res.results.map((r) => r.status)).toEqual(refs.map(() => 'suspicious'));
      return (await lookups(podA)).replica > before.replica;
    },
    { what: 'pod A to use the replica again' },
  );
});
