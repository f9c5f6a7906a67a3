import { packageKey, type PackageRef } from '@safepkg/core';
import { contextEnv, pkgs, startApp, useTestContext, waitFor, type RunningApp } from '@safepkg/testkit';

const TOKEN = 'e2e-admin-token-0123456789';
const ctx = useTestContext({ adminToken: TOKEN, bufferPartitions: 4, flushIntervalMs: 200 });
let podA: RunningApp;
let podB: RunningApp;
let flusher: RunningApp;

beforeAll(async () => {
  const env = contextEnv(ctx.config, { LOG_LEVEL: 'warn' });
  [podA, podB, flusher] = await Promise.all([
    startApp('api', env),
    startApp('api', env),
    startApp('flusher', env),
  ]);
});
afterAll(async () => {
  await Promise.all([podA?.kill('SIGTERM'), podB?.kill('SIGTERM'), flusher?.kill('SIGTERM')]);
});

interface Result extends PackageRef {
  status: string;
  source: string | null;
  basis: string | null;
  pending: boolean;
  threatIndex: number | null;
  known: boolean;
}

async function post(pod: RunningApp, path: string, body: unknown): Promise<unknown> {
  const res = await fetch(`${pod.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
    body: JSON.stringify(body),
  });
  if (res.status !== 200) throw new Error(`${path} answered ${res.status}: ${await res.text()}`);
  return res.json();
}

const check = async (pod: RunningApp, packages: PackageRef[]) =>
  ((await post(pod, '/v1/packages/check', { packages })) as { results: Result[] }).results;

test('verdicts posted through pod B are answered by pod A at once, for 1,000 cached packages; manual outranks model', async () => {
  const refs = pkgs(0, 1000, 'pods');
  await check(podA, refs);
  // Once flushed, pod A caches them all as known and unknown.
  await waitFor(async () => (await check(podA, refs)).every((r) => r.known), {
    timeoutMs: 30000,
    what: 'the flush',
  });
  const cached = await ctx.redis.mget(...refs.map((r) => ctx.keys.cache(packageKey(r))));
  expect(cached.every((c) => c !== null && JSON.parse(c).rev === 0)).toBe(true);

  const manual = refs.map((r, i) => ({
    ...r,
    verdict: i % 3 === 0 ? 'malicious' : 'safe',
    source: 'manual',
    threatIndex: (i % 10) / 10,
  }));
  expect(await post(podB, '/v1/admin/evaluations', { evaluations: manual })).toEqual({ accepted: 1000 });

  const afterManual = await check(podA, refs);
  expect(afterManual.map((r) => [r.status, r.source, r.threatIndex])).toEqual(
    manual.map((m) => [m.verdict, 'manual', m.threatIndex]),
  );

  const model = refs.map((r) => ({ ...r, verdict: 'suspicious', source: 'model', threatIndex: 0.5 }));
  expect(await post(podB, '/v1/admin/evaluations', { evaluations: model })).toEqual({ accepted: 1000 });
  const afterModel = await check(podA, refs);
  expect(afterModel.map((r) => [r.status, r.source])).toEqual(manual.map((m) => [m.verdict, 'manual']));
});

test('a signer verdict posted through pod B is answered by pod A at once for cached, stored-uncached and never-seen packages it signs', async () => {
  const signature = 'ab'.repeat(32);
  const signed = (from: number, n: number, ns: string) => pkgs(from, n, ns).map((p) => ({ ...p, signature }));
  const cachedRefs = signed(0, 300, 'signcached');
  const storedRefs = signed(0, 300, 'signstored');
  const neverRefs = signed(0, 300, 'signnever');
  // Both sets flushed; only the first is (still) cached, the second evicted.
  await check(podA, [...cachedRefs, ...storedRefs]);
  await waitFor(async () => (await check(podA, [...cachedRefs, ...storedRefs])).every((r) => r.known), {
    timeoutMs: 30000,
    what: 'the flush',
  });
  await ctx.redis.del(...storedRefs.map((r) => ctx.keys.cache(packageKey(r))));
  const before = await ctx.redis.mget(...cachedRefs.map((r) => ctx.keys.cache(packageKey(r))));
  expect(before.every((c) => c !== null)).toBe(true);

  expect(
    await post(podB, '/v1/admin/signer-evaluations', {
      evaluations: [{ signature, verdict: 'malicious', source: 'model', threatIndex: 0.9 }],
    }),
  ).toEqual({ accepted: 1 });

  const results = await check(podA, [...cachedRefs, ...storedRefs, ...neverRefs]);
  expect(new Set(results.map((r) => `${r.status} ${r.source} ${r.basis} ${r.known} ${r.pending}`))).toEqual(
    new Set(['malicious model signer true false', 'malicious model signer false true']),
  );
  expect(results.slice(600).every((r) => !r.known && r.pending)).toBe(true);
  // No package entry was rewritten by the signer verdict.
  expect(await ctx.redis.mget(...cachedRefs.map((r) => ctx.keys.cache(packageKey(r))))).toEqual(before);
  // The never-seen ones are flushed and queued for analysis as before.
  await waitFor(async () => (await check(podB, neverRefs)).every((r) => r.known), {
    timeoutMs: 30000,
    what: 'the flush of the never-seen packages',
  });
  const queued = await ctx.db.pool.query<{ n: string }>(
    `SELECT count(*) AS n FROM analysis_queue q JOIN packages p ON p.id = q.package_id
      WHERE p.name LIKE 'com.signnever.%'`,
  );
  expect(Number(queued.rows[0]?.n)).toBe(300);
});

test('the analyst CLI claims new packages and submits verdicts from a JSON file', async () => {
  const { execFile } = await import('node:child_process');
  const { mkdtempSync, writeFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const cli = join(__dirname, '..', '..', 'apps', 'api', 'dist', 'cli', 'analyst.js');
  const run = (args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(
        process.execPath,
        [cli, ...args],
        { env: { ...process.env, SAFEPKG_URL: podB.url, ADMIN_TOKEN: TOKEN, SAFEPKG_ACTOR: 'cli-test' } },
        (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
      );
    });

  const fresh = pkgs(5000, 3, 'cli');
  await check(podA, fresh);
  await waitFor(async () => (await check(podA, fresh)).every((r) => r.known), {
    timeoutMs: 30000,
    what: 'the flush',
  });

  const claimed = await run(['claim', '--limit', '1000']);
  expect(claimed.code).toBe(0);
  const packages = (JSON.parse(claimed.stdout) as { packages: PackageRef[] }).packages;
  const mine = packages.filter((p) => p.name.startsWith('com.cli.'));
  expect(mine.map((p) => packageKey(p)).sort()).toEqual(fresh.map((p) => packageKey(p)).sort());

  const file = join(mkdtempSync(join(tmpdir(), 'analyst-')), 'verdicts.json');
  writeFileSync(
    file,
    JSON.stringify(mine.map((p) => ({ ...p, verdict: 'malicious', source: 'manual', threatIndex: 0.75 }))),
  );
  const submitted = await run(['submit', file]);
  expect(submitted).toMatchObject({ code: 0 });
  expect(JSON.parse(submitted.stdout)).toEqual({ accepted: 3 });
  expect((await check(podA, fresh)).map((r) => r.status)).toEqual(['malicious', 'malicious', 'malicious']);

  const usage = await run(['claim', '--limit', '0']);
  expect(usage.code).toBe(2);
  expect(usage.stderr).toContain('--limit');
});
