import { KeySchema, packageKey, type PackageRef } from '@safepkg/core';
import { contextEnv, pkg, startApp, useTestContext, waitFor, type RunningApp } from '@safepkg/testkit';

interface CheckResult extends PackageRef {
  known: boolean;
  pending: boolean;
  status: string;
}

const ctx = useTestContext({ bufferPartitions: 8, flushIntervalMs: 200, flushBatchSize: 5000 });
let api: RunningApp;
let flusher: RunningApp;

beforeAll(async () => {
  const env = contextEnv(ctx.config, { LOG_LEVEL: 'warn' });
  [api, flusher] = await Promise.all([startApp('api', env), startApp('flusher', env)]);
});

afterAll(async () => {
  await Promise.all([api?.kill('SIGTERM'), flusher?.kill('SIGTERM')]);
});

async function check(packages: PackageRef[]): Promise<CheckResult[]> {
  const res = await fetch(`${api.url}/v1/packages/check`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ packages }),
  });
  if (res.status !== 200) throw new Error(`check answered ${res.status}: ${await res.text()}`);
  const body = (await res.json()) as { results: CheckResult[] };
  return body.results;
}

async function bufferDepth(keys: KeySchema, partitions: number): Promise<number> {
  let depth = 0;
  for (let p = 0; p < partitions; p++) depth += await ctx.redis.zcard(keys.partition(p).pending);
  return depth;
}

test('50,000 checks from concurrent clients end as exactly the distinct set in PostgreSQL, each queued once', async () => {
  const DISTINCT = 15_000;
  const REQUESTS = 520;
  const PER_REQUEST = 100;
  const CLIENTS = 8;

  // A deterministic pseudo-random draw with heavy repetition across requests (a hot head)
  // and a duplicate inside every request.
  let seed = 42;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const requests: PackageRef[][] = [];
  for (let r = 0; r < REQUESTS; r++) {
    const body: PackageRef[] = [];
    for (let i = 0; i < PER_REQUEST - 1; i++) {
      const hot = rand() < 0.3;
      body.push(pkg(hot ? Math.floor(rand() * 200) : Math.floor(rand() * DISTINCT), 'e2e'));
    }
    body.push(body[0] as PackageRef);
    requests.push(body);
  }
  const sent = new Map<string, PackageRef>();
  for (const body of requests) for (const p of body) sent.set(packageKey(p), p);
  expect(requests.length * PER_REQUEST).toBeGreaterThanOrEqual(50_000);

  let next = 0;
  let answered = 0;
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      while (next < requests.length) {
        const body = requests[next++] as PackageRef[];
        const results = await check(body);
        expect(results.map((r) => packageKey(r))).toEqual(body.map((p) => packageKey(p)));
        // Every package is either stored already or waiting in the buffer.
        expect(results.every((r) => r.known || r.pending)).toBe(true);
        answered += results.length;
      }
    }),
  );
  expect(answered).toBe(REQUESTS * PER_REQUEST);

  await waitFor(
    async () => {
      const { rows } = await ctx.db.pool.query<{ n: string }>('SELECT count(*) AS n FROM packages');
      return Number(rows[0]?.n) === sent.size && (await bufferDepth(ctx.keys, ctx.config.bufferPartitions)) === 0;
    },
    { timeoutMs: 60000, intervalMs: 200, what: 'the buffer to drain' },
  );

  const stored = await ctx.db.pool.query<{ name: string; version_code: string; signature: string }>(
    'SELECT name, version_code, signature FROM packages',
  );
  const storedKeys = new Set(
    stored.rows.map((r) => packageKey({ name: r.name, versionCode: Number(r.version_code), signature: r.signature })),
  );
  expect(storedKeys.size).toBe(stored.rowCount);
  expect([...storedKeys].sort()).toEqual([...sent.keys()].sort());

  const queue = await ctx.db.pool.query<{ queued: string; distinct_packages: string; orphans: string }>(
    `SELECT count(*) AS queued, count(DISTINCT q.package_id) AS distinct_packages,
            count(*) FILTER (WHERE p.id IS NULL) AS orphans
       FROM analysis_queue q LEFT JOIN packages p ON p.id = q.package_id`,
  );
  expect(queue.rows[0]).toEqual({ queued: String(sent.size), distinct_packages: String(sent.size), orphans: '0' });
  expect(await bufferDepth(ctx.keys, ctx.config.bufferPartitions)).toBe(0);

  const all = [...sent.values()];
  for (let i = 0; i < all.length; i += 1000) {
    const results = await check(all.slice(i, i + 1000));
    expect(results.filter((r) => !r.known)).toEqual([]);
    expect(results.filter((r) => r.pending)).toEqual([]);
  }
});
