import {
  heldInRedis,
  KeySchema,
  packageKey,
  PackageStore,
  ReportBuffer,
  RedisBuffer,
  RetentionStore,
} from '@safepkg/core';
import { pkgs, useTestContext } from '@safepkg/testkit';

const ctx = useTestContext();

test('the sweep scan is an index range scan on packages_retention, not a table scan', async () => {
  await new PackageStore(ctx.db.pool).insertBatch(
    pkgs(0, 200, 'plan').map((ref) => ({ ref, firstSeenAt: new Date(1_000) })),
  );
  await ctx.db.pool.query('ANALYZE packages');
  const client = await ctx.db.pool.connect();
  try {
    await client.query('BEGIN');
    // A tiny table is cheaper to scan whole; what matters is that the index can serve the query.
    await client.query('SET LOCAL enable_seqscan = off');
    const { rows } = await client.query<{ 'QUERY PLAN': unknown }>(
      `EXPLAIN (FORMAT JSON) SELECT p.id, p.first_seen_at::text AS t FROM packages p
        WHERE p.verdict IS NULL AND p.first_seen_at < now()
          AND (p.first_seen_at, p.id) > ('-infinity'::timestamptz, 0::bigint)
        ORDER BY p.first_seen_at, p.id LIMIT 1000`,
    );
    const plan = JSON.stringify(rows[0]?.['QUERY PLAN']);
    expect(plan).toContain('"Index Name":"packages_retention"');
    expect(plan).not.toContain('"Node Type":"Sort"');
    await client.query('ROLLBACK');
  } finally {
    client.release();
  }
});

test("the report flush's UPDATE of reports and last_seen_at stays a HOT update with the retention index", async () => {
  const [ref] = pkgs(0, 1, 'hot');
  await new PackageStore(ctx.db.pool).insertBatch([{ ref: ref!, firstSeenAt: new Date(1_000) }]);
  const client = await ctx.db.pool.connect();
  try {
    await client.query('BEGIN');
    await client.query(
      `UPDATE packages SET reports = reports + 1, last_seen_at = GREATEST(last_seen_at, now()) WHERE name = $1`,
      [ref!.name],
    );
    // The transaction's own statistics, current at once (pg_stat_user_tables lags).
    const { rows } = await client.query<{ upd: string; hot: string }>(
      `SELECT n_tup_upd AS upd, n_tup_hot_upd AS hot FROM pg_stat_xact_user_tables WHERE relname = 'packages'`,
    );
    expect(rows[0]).toEqual({ upd: '1', hot: '1' });
    await client.query('ROLLBACK');
  } finally {
    client.release();
  }
});

test('heldInRedis names the keys with a pending entry, live deltas or in-flight deltas, across partitions', async () => {
  const keys = new KeySchema(`${ctx.config.keyPrefix}_held`);
  const all = pkgs(0, 40, 'held').map(packageKey);
  const [pending, live, inflight] = all as [string, string, string];
  await new RedisBuffer(ctx.redis, keys, 4, 1000).add([{ key: pending, payload: { t: 1 } }]);
  const reports = new ReportBuffer(ctx.redis, keys, 4);
  await reports.add([inflight], 1);
  for (let p = 0; p < 4; p++) await reports.take(p);
  await reports.add([live], 2);
  expect(await heldInRedis(ctx.redis, keys, 4, all)).toEqual(new Set([pending, live, inflight]));
  expect(await heldInRedis(ctx.redis, keys, 4, [])).toEqual(new Set());
});

test('a batch with nothing old commits at once and ends the pass', async () => {
  const store = new RetentionStore(ctx.db.pool, { lockTimeoutMs: 100, statementTimeoutMs: 1000 });
  const r = await store.sweepBatch({
    threshold: new Date(0),
    after: null,
    limit: 10,
    held: async () => new Set(),
  });
  expect(r).toEqual({ scanned: 0, cursor: null, locked: 0, held: 0, deleted: [], queueRows: 0 });
});
