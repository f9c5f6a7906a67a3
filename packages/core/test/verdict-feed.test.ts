import {
  CursorExpiredError,
  decodeFeedCursor,
  encodeFeedCursor,
  EvaluationStore,
  parseFeedQuery,
  SignerStore,
  ValidationError,
  VerdictFeed,
  type EvaluationInput,
  type PackageRef,
  type VerdictChange,
} from '@safepkg/core';
import { pkgs, useTestContext } from '@safepkg/testkit';

const ctx = useTestContext();

const evaluation = (ref: PackageRef, over: Partial<EvaluationInput> = {}): EvaluationInput => ({
  ...ref,
  verdict: 'malicious',
  source: 'model',
  threatIndex: 0.5,
  ...over,
});

/** Reads the whole feed from `after`, `limit` at a time. */
async function drain(feed: VerdictFeed, after: bigint | null, limit: number) {
  const seen: VerdictChange[] = [];
  let cursor = after;
  for (;;) {
    const page = await feed.read(cursor, limit);
    seen.push(...page.changes);
    cursor = decodeFeedCursor(page.next);
    if (page.changes.length < limit) return { seen, cursor };
  }
}

beforeEach(async () => {
  await ctx.db.pool.query(
    'TRUNCATE verdict_changes, evaluations, analysis_queue, packages, signers, signer_evaluations CASCADE',
  );
  await ctx.db.pool.query('UPDATE verdict_feed_state SET pruned_to = 0');
});

describe('change detection', () => {
  test('a row only when the answered status changes, in the evaluation statement', async () => {
    const store = new EvaluationStore(ctx.db.pool);
    const feed = new VerdictFeed(ctx.db.pool);
    const [a, b] = pkgs(0, 2, 'feeddetect') as [PackageRef, PackageRef];
    await store.record([evaluation(a), evaluation(b)], 'model');
    // Same verdict again: rev moves, the answer does not, so no change.
    await store.record([evaluation(a)], 'model');
    // A new threat index is a change; a model verdict under a manual one is not.
    await store.record([evaluation(a, { threatIndex: 0.7 })], 'model');
    await store.record([evaluation(b, { source: 'manual', verdict: 'safe', threatIndex: 0 })], 'analyst');
    await store.record([evaluation(b, { verdict: 'malicious' })], 'model');
    // Two evaluations of one package in a batch: one change, to the winner.
    await store.record(
      [
        evaluation(a, { verdict: 'suspicious' }),
        evaluation(a, { verdict: 'safe', source: 'manual', threatIndex: 0.1 }),
      ],
      'analyst',
    );

    const { seen } = await drain(feed, null, 100);
    expect(
      seen.map((c) => [c.kind, c.name, c.status, c.source, c.basis, Math.round(c.threatIndex * 10)]),
    ).toEqual([
      ['package', a.name, 'malicious', 'model', 'package', 5],
      ['package', b.name, 'malicious', 'model', 'package', 5],
      ['package', a.name, 'malicious', 'model', 'package', 7],
      ['package', b.name, 'safe', 'manual', 'package', 0],
      ['package', a.name, 'safe', 'manual', 'package', 1],
    ]);
    const byName = new Map([a, b].map((r) => [r.name, r]));
    for (const c of seen)
      expect([c.versionCode, c.signature]).toEqual([
        byName.get(c.name ?? '')?.versionCode,
        byName.get(c.name ?? '')?.signature,
      ]);
    const { rows } = await ctx.db.pool.query<{ n: string }>('SELECT count(*) AS n FROM evaluations');
    expect(Number(rows[0]?.n)).toBe(8);
  });

  test('signer verdicts: a signer row per change of its verdict; package rows carry the combined answer and its basis', async () => {
    const store = new EvaluationStore(ctx.db.pool);
    const signers = new SignerStore(ctx.db.pool);
    const feed = new VerdictFeed(ctx.db.pool);
    const [p] = pkgs(0, 1, 'feedsigner') as [PackageRef];
    const signer = (over: Partial<{ verdict: 'safe' | 'malicious'; source: 'manual' | 'model' }>) => ({
      signature: p.signature,
      verdict: 'malicious' as const,
      source: 'manual' as const,
      threatIndex: 0.9,
      ...over,
    });
    await store.record([evaluation(p, { verdict: 'safe', threatIndex: 0.1 })], 'model');
    await signers.record([signer({})], 'analyst');
    // Its own model verdict moves, but the signer's manual one answers: no package row.
    await store.record([evaluation(p, { verdict: 'suspicious', threatIndex: 0.4 })], 'model');
    // A model verdict on the signer under its manual one changes nothing.
    await signers.record([signer({ source: 'model', verdict: 'safe' })], 'model');
    // The package's own manual verdict outranks the signer's again.
    await store.record([evaluation(p, { source: 'manual', verdict: 'safe', threatIndex: 0 })], 'analyst');

    const { seen } = await drain(feed, null, 100);
    expect(
      seen.map((c) => [
        c.kind,
        c.name,
        c.signature,
        c.status,
        c.source,
        c.basis,
        Math.round(c.threatIndex * 10),
      ]),
    ).toEqual([
      ['package', p.name, p.signature, 'safe', 'model', 'package', 1],
      ['signer', null, p.signature, 'malicious', 'manual', 'signer', 9],
      ['package', p.name, p.signature, 'safe', 'manual', 'package', 0],
    ]);
  });

  test('a rolled-back evaluation leaves no change', async () => {
    const feed = new VerdictFeed(ctx.db.pool);
    const [a] = pkgs(0, 1, 'feedrollback') as [PackageRef];
    await new EvaluationStore(ctx.db.pool).record([evaluation(a)], 'model');
    const client = await ctx.db.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query(
        `INSERT INTO evaluations (package_id, source, verdict, threat_index, created_by)
         SELECT id, 'manual', 'safe', 0, 'x' FROM packages`,
      );
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
    const { seen } = await drain(feed, null, 10);
    expect(seen.map((c) => c.status)).toEqual(['malicious']);
  });
});

describe('cursor', () => {
  test('round-trips, and anything else is refused', () => {
    expect(decodeFeedCursor(encodeFeedCursor(0n))).toBe(0n);
    expect(decodeFeedCursor(encodeFeedCursor(9223372036854775807n))).toBe(9223372036854775807n);
    for (const bad of [
      '',
      '1',
      '0',
      Buffer.from('vc1:-1').toString('base64url'),
      Buffer.from('vc1:01').toString('base64url'),
      Buffer.from('vc1:9223372036854775808').toString('base64url'),
      Buffer.from('vc2:5').toString('base64url'),
      `${encodeFeedCursor(5n)}=`,
      'x'.repeat(41),
    ])
      expect(decodeFeedCursor(bad)).toBeNull();
  });

  test('a bad query lists every bad field', () => {
    let caught: unknown;
    try {
      parseFeedQuery({ after: 'nope', limit: '0', extra: '1' });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ValidationError);
    expect((caught as ValidationError).details.map((d) => d.path).sort()).toEqual([
      'after',
      'extra',
      'limit',
    ]);
    expect(parseFeedQuery({})).toEqual({ after: null, limit: 100 });
    expect(parseFeedQuery({ limit: '1000', after: encodeFeedCursor(3n) })).toEqual({
      after: 3n,
      limit: 1000,
    });
    expect(() => parseFeedQuery({ limit: '1001' })).toThrow(ValidationError);
    expect(() => parseFeedQuery({ limit: ['1', '2'] })).toThrow(ValidationError);
  });

  test('pages with small limits return every change once, and an empty page keeps the cursor', async () => {
    const store = new EvaluationStore(ctx.db.pool);
    const feed = new VerdictFeed(ctx.db.pool);
    const refs = pkgs(0, 7, 'feedpage');
    await store.record(
      refs.map((r) => evaluation(r)),
      'model',
    );
    const first = await feed.read(null, 3);
    expect(first.changes.map((c) => c.name)).toEqual(refs.slice(0, 3).map((r) => r.name));
    const { seen, cursor } = await drain(feed, decodeFeedCursor(first.next), 3);
    expect(seen.map((c) => c.name)).toEqual(refs.slice(3).map((r) => r.name));
    const empty = await feed.read(cursor, 3);
    expect(empty.changes).toEqual([]);
    expect(decodeFeedCursor(empty.next)).toBe(cursor);
  });
});

describe('retention', () => {
  test('prune deletes old changes; a cursor into them is expired, one at the edge is not', async () => {
    const store = new EvaluationStore(ctx.db.pool);
    const feed = new VerdictFeed(ctx.db.pool);
    const refs = pkgs(0, 5, 'feedprune');
    await store.record(
      refs.map((r) => evaluation(r)),
      'model',
    );
    const all = await feed.read(null, 100);
    expect(all.changes).toHaveLength(5);
    const ids = (
      await ctx.db.pool.query<{ id: string }>('SELECT id FROM verdict_changes ORDER BY id')
    ).rows.map((r) => BigInt(r.id));
    // The first three are 40 days old.
    await ctx.db.pool.query(
      `UPDATE verdict_changes SET changed_at = now() - interval '40 days' WHERE id <= $1`,
      [String(ids[2])],
    );
    expect(await feed.prune(30)).toBe(3);
    expect(await feed.prune(30)).toBe(0);

    await expect(feed.read(null, 100)).resolves.toMatchObject({
      changes: refs.slice(3).map((r) => ({ name: r.name })),
    });
    const expired = await feed.read(ids[1] as bigint, 100).catch((err: unknown) => err);
    expect(expired).toBeInstanceOf(CursorExpiredError);
    expect((expired as CursorExpiredError).code).toBe('cursor_expired');
    expect(decodeFeedCursor((expired as CursorExpiredError).oldest)).toBe(ids[2]);
    // A follower that had read up to the last deleted row missed nothing.
    const edge = await feed.read(ids[2] as bigint, 100);
    expect(edge.changes.map((c) => c.name)).toEqual(refs.slice(3).map((r) => r.name));
  });
});
