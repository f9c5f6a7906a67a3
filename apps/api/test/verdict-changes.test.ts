import { encodeFeedCursor, VerdictFeed } from '@safepkg/core';
import { pkgs, useTestContext } from '@safepkg/testkit';
import { serveApp, type TestServer } from './helpers';

const TOKEN = 'test-admin-token-0123456789';
const ctx = useTestContext({ adminToken: TOKEN });
const auth = { authorization: `Bearer ${TOKEN}` };

interface Page {
  changes: {
    kind: string;
    name: string | null;
    versionCode: number | null;
    status: string;
    changedAt: string;
  }[];
  next: string;
}

let server: TestServer;
beforeAll(async () => {
  server = await serveApp(ctx);
});
afterAll(() => server.close());

const refs = pkgs(0, 5, 'feedapi');

test('the feed needs the admin token', async () => {
  const attempts: Record<string, string>[] = [{}, { authorization: 'Bearer wrong-token-000000000000' }];
  for (const headers of attempts) {
    const res = await server.request('GET', '/v1/admin/verdict-changes', undefined, headers);
    expect(res.status).toBe(401);
    expect(res.body).toMatchObject({ error: { code: 'unauthorized' } });
  }
});

test('evaluations show up as changes, paged by the cursor; an empty page keeps it', async () => {
  const empty = await server.request('GET', '/v1/admin/verdict-changes', undefined, auth);
  expect(empty.status).toBe(200);
  expect(empty.body).toEqual({ changes: [], next: encodeFeedCursor(0n) });

  const evaluated = await server.request(
    'POST',
    '/v1/admin/evaluations',
    { evaluations: refs.map((r) => ({ ...r, verdict: 'malicious', source: 'model', threatIndex: 0.9 })) },
    auth,
  );
  expect(evaluated.status).toBe(200);

  const names: string[] = [];
  let cursor = (empty.body as Page).next;
  for (let i = 0; i < 3; i++) {
    const res = await server.request(
      'GET',
      `/v1/admin/verdict-changes?after=${cursor}&limit=2`,
      undefined,
      auth,
    );
    expect(res.status).toBe(200);
    const page = res.body as Page;
    names.push(...page.changes.map((c) => c.name ?? ''));
    cursor = page.next;
  }
  expect(names).toEqual(refs.map((r) => r.name));
  const first = (
    (await server.request('GET', '/v1/admin/verdict-changes?limit=1', undefined, auth)).body as Page
  ).changes[0];
  expect(first).toEqual({
    kind: 'package',
    name: refs[0]?.name,
    versionCode: refs[0]?.versionCode,
    signature: refs[0]?.signature,
    status: 'malicious',
    source: 'model',
    basis: 'package',
    threatIndex: expect.closeTo(0.9, 5) as number,
    changedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) as string,
  });
  const after = await server.request('GET', `/v1/admin/verdict-changes?after=${cursor}`, undefined, auth);
  expect(after.body).toEqual({ changes: [], next: cursor });
});

test('a bad cursor or limit is 400 listing every bad field', async () => {
  const res = await server.request(
    'GET',
    '/v1/admin/verdict-changes?after=bogus&limit=1001&since=1',
    undefined,
    auth,
  );
  expect(res.status).toBe(400);
  expect(res.body).toMatchObject({ error: { code: 'invalid_request' } });
  const paths = (res.body as { error: { details: { path: string }[] } }).error.details.map((d) => d.path);
  expect(paths.sort()).toEqual(['after', 'limit', 'since']);
  for (const q of [
    'limit=0',
    'limit=-1',
    'limit=1.5',
    'limit=',
    'limit=1&limit=2',
    'after=',
    `after=${'A'.repeat(500)}`,
  ]) {
    const r = await server.request('GET', `/v1/admin/verdict-changes?${q}`, undefined, auth);
    expect([q, r.status]).toEqual([q, 400]);
  }
});

test('a cursor older than the oldest change kept is 410 cursor_expired with where to resume', async () => {
  await ctx.db.pool.query(`UPDATE verdict_changes SET changed_at = now() - interval '60 days'
                            WHERE id <= (SELECT min(id) + 1 FROM verdict_changes)`);
  expect(await new VerdictFeed(ctx.db.pool).prune(30)).toBe(2);
  const { rows } = await ctx.db.pool.query<{ id: string }>('SELECT min(id) AS id FROM verdict_changes');
  const oldestKept = BigInt(rows[0]?.id ?? '0');
  const res = await server.request(
    'GET',
    `/v1/admin/verdict-changes?after=${encodeFeedCursor(0n)}`,
    undefined,
    auth,
  );
  expect(res.status).toBe(410);
  expect(res.body).toMatchObject({
    error: { code: 'cursor_expired', details: [{ path: 'after' }] },
    oldest: encodeFeedCursor(oldestKept - 1n),
  });
  const resumed = await server.request(
    'GET',
    `/v1/admin/verdict-changes?after=${(res.body as { oldest: string }).oldest}`,
    undefined,
    auth,
  );
  expect((resumed.body as Page).changes.map((c) => c.name)).toEqual(refs.slice(2).map((r) => r.name));
  // No `after`: from the oldest change kept, no error.
  const fresh = await server.request('GET', '/v1/admin/verdict-changes', undefined, auth);
  expect(fresh.status).toBe(200);
  expect((fresh.body as Page).changes).toHaveLength(3);
});
