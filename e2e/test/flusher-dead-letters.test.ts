import { packageKey } from '@safepkg/core';
import {
  bufferPackages,
  contextEnv,
  pkg,
  pkgs,
  startApp,
  useTestContext,
  waitFor,
  type RunningApp,
} from '@safepkg/testkit';
import { freshCase } from './flusher-helpers';

const TOKEN = 'dead-letter-test-admin-token-0123456789';
const ctx = useTestContext({
  bufferPartitions: 2,
  flushBatchSize: 500,
  flushIntervalMs: 100,
  adminToken: TOKEN,
});
let api: RunningApp;
let flusher: RunningApp;

interface DeadLetterView {
  key: string;
  partition: number;
  firstSeenAt: string;
  error: { code: string; message: string };
  deadAt: string;
}

async function admin(
  method: 'GET' | 'POST',
  path: string,
  body?: unknown,
  token = TOKEN,
): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${api.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

const deadLetters = async () =>
  ((await admin('GET', '/v1/admin/dead-letters')).body as { deadLetters: DeadLetterView[] }).deadLetters;

afterAll(async () => {
  await Promise.all([api?.kill('SIGTERM'), flusher?.kill('SIGTERM')]);
});

test('dead letters over HTTP: listed with the PostgreSQL error; after the fix, a redrive of some keys and then of all flushes them', async () => {
  const c = await freshCase(ctx, 'dl');
  const env = contextEnv(c.config, { LOG_LEVEL: 'warn' });
  [api, flusher] = await Promise.all([startApp('api', env), startApp('flusher', env)]);

  // "The bug": a constraint that wrongly refuses a whole namespace of valid packages.
  await ctx.db.pool.query(
    `ALTER TABLE packages ADD CONSTRAINT refuse_fixable CHECK (name NOT LIKE 'com.fixable.%')`,
  );
  const firstSeen = Date.parse('2026-01-02T03:04:05.000Z');
  const fixable = pkgs(0, 5, 'fixable').map(packageKey);
  // Entries that bypassed the API (written straight into Redis) and that no fix makes valid.
  const poison = [
    `9lives.poison:1:${pkg(1).signature}`,
    `com.poison.big:99999999999999999999:${pkg(2).signature}`,
  ];
  const good = await bufferPackages(c.buffer, 300, 'good');
  await c.buffer.add([...fixable, ...poison].map((key) => ({ key, payload: { t: firstSeen } })));

  await waitFor(async () => (await deadLetters()).length === 7 && (await c.state()).pending === 0, {
    what: 'dead letters',
  });
  const listed = new Map((await deadLetters()).map((d) => [d.key, d]));
  for (const key of fixable) {
    expect(listed.get(key)).toMatchObject({
      firstSeenAt: '2026-01-02T03:04:05.000Z',
      error: { code: '23514', message: expect.stringMatching(/refuse_fixable/) },
    });
  }
  expect(listed.get(poison[0] as string)?.error.message).toMatch(/packages_name_valid/);
  expect(listed.get(poison[1] as string)?.error.code).toBe('22003');
  expect((await c.state()).storedKeys).toEqual([...good].sort());
  expect(((await admin('GET', '/v1/admin/buffer')).body as { deadLetters: number }).deadLetters).toBe(7);
  expect((await admin('GET', '/v1/admin/dead-letters', undefined, 'not-the-token-at-all-0000')).status).toBe(
    401,
  );
  expect(
    (await admin('POST', '/v1/admin/dead-letters/redrive', {}, 'not-the-token-at-all-0000')).status,
  ).toBe(401);

  // "The fix", then a redrive of two chosen keys (plus one that is not a dead letter): only those two come back.
  await ctx.db.pool.query('ALTER TABLE packages DROP CONSTRAINT refuse_fixable');
  const some = fixable.slice(0, 2);
  expect(
    await admin('POST', '/v1/admin/dead-letters/redrive', {
      keys: [...some, packageKey(pkg(99, 'nowhere'))],
    }),
  ).toEqual({
    status: 200,
    body: { redriven: 2 },
  });
  await waitFor(async () => (await c.state()).storedKeys.length === 302, {
    what: 'the two redriven entries to be flushed',
  });
  expect((await deadLetters()).map((d) => d.key).sort()).toEqual([...fixable.slice(2), ...poison].sort());

  // A redrive of all: the fixed ones are flushed, the real poison goes back to dead with its error.
  expect(await admin('POST', '/v1/admin/dead-letters/redrive')).toEqual({
    status: 200,
    body: { redriven: 5 },
  });
  await waitFor(
    async () => (await c.state()).storedKeys.length === 305 && (await deadLetters()).length === 2,
    {
      what: 'the redrive of all to settle',
    },
  );
  const again = await deadLetters();
  expect(again.map((d) => d.key).sort()).toEqual([...poison].sort());
  expect(again.every((d) => d.error.code.length > 0 && d.firstSeenAt === '2026-01-02T03:04:05.000Z')).toBe(
    true,
  );

  const s = await c.state();
  expect(s.storedKeys).toEqual([...good, ...fixable].sort());
  expect(s).toMatchObject({ pending: 0, dead: 2, queued: 305, queuedDistinct: 305 });
  const { rows } = await ctx.db.pool.query<{ first_seen_at: Date }>(
    "SELECT first_seen_at FROM packages WHERE name LIKE 'com.fixable.%'",
  );
  expect(rows.map((r) => r.first_seen_at.getTime())).toEqual(Array(5).fill(firstSeen));
});
