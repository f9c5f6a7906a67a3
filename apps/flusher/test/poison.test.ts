import { Pool } from 'pg';
import { bufferPackages, flushState, pkg, useTestContext } from '@safepkg/testkit';
import { packageKey } from '@safepkg/core';
import { countStatements, counterValue, testFlusher } from './helpers';

const ctx = useTestContext({ bufferPartitions: 1, flushBatchSize: 5000 });

const sig = pkg(1).signature;
// Entries that bypassed the API's validation (written straight into Redis), each refused by PostgreSQL.
const POISON = {
  beyondBigint: `com.poison.big:99999999999999999999:${sig}`,
  badName: `9lives.poison:1:${sig}`,
  upperCaseSignature: `com.poison.upper:1:${sig.toUpperCase()}`,
};
const MALFORMED = 'not-a-package-key';

test('poison rows in a batch are isolated by halving into dead letters with their error; the rest is flushed', async () => {
  const pool = new Pool({ connectionString: ctx.db.url, max: 2 });
  const statements = countStatements(pool);
  try {
    const t = testFlusher(ctx, { pool });
    const good = await bufferPackages(t.buffer, 1021, 'good');
    await t.buffer.add(
      [...Object.values(POISON), MALFORMED].map((key) => ({ key, payload: { t: 1_700_000_000_000 } })),
    );

    const r = await t.flusher.tick();
    expect(r.error).toBeNull();
    expect(r.partitions[0]).toMatchObject({ rows: 1021, newRows: 1021, deadLettered: 4, batches: 1 });

    const s = await flushState(ctx.db.pool, ctx.redis, ctx.keys, 1);
    expect(s.storedKeys).toEqual([...good].sort());
    expect(s).toMatchObject({ pending: 0, dead: 4, queued: 1021, queuedDistinct: 1021 });
    expect(await counterValue(t.metrics.deadLetters)).toBe(4);

    const letters = await t.buffer.deadLetters([0]);
    const byKey = new Map(letters.map((l) => [l.key, l]));
    expect(byKey.get(POISON.beyondBigint)?.error.code).toBe('22003');
    expect(byKey.get(POISON.badName)?.error).toMatchObject({
      code: '23514',
      message: expect.stringMatching(/packages_name_valid/),
    });
    expect(byKey.get(POISON.upperCaseSignature)?.error.message).toMatch(/packages_signature_valid/);
    expect(byKey.get(MALFORMED)?.error.code).toBe('malformed_key');
    // The first-seen time travels with the dead letter, for a later redrive.
    expect(byKey.get(POISON.badName)?.payload.t).toBe(1_700_000_000_000);

    // 1,024 rows reach PostgreSQL with 3 bad ones: halving costs at most 1 + 2·3·log2(1024) = 61
    // transactions of a handful of statements each — far from one round trip per row.
    expect(t.store.inserts).toBeLessThanOrEqual(61);
    expect(t.store.inserts).toBeGreaterThan(1);
    expect(statements.count).toBeLessThanOrEqual(61 * 6);
    expect(statements.count).toBeLessThan(1021);
  } finally {
    await pool.end();
  }
});

test('a redriven dead letter that is valid now is flushed with its original first-seen time; a still-bad one returns to dead', async () => {
  const t = testFlusher(ctx);
  await ctx.db.pool.query('TRUNCATE packages, analysis_queue CASCADE');
  await ctx.redis.del(ctx.keys.partition(0).dead);
  const fixable = pkg(7, 'fixable');
  const fixableKey = packageKey(fixable);
  // "The bug": a constraint that wrongly refuses a namespace; the entry is dead-lettered.
  await ctx.db.pool.query(
    `ALTER TABLE packages ADD CONSTRAINT refuse_fixable CHECK (name NOT LIKE 'com.fixable.%')`,
  );
  await t.buffer.add([
    { key: fixableKey, payload: { t: 1_600_000_000_000 } },
    { key: POISON.badName, payload: { t: 1_600_000_000_000 } },
  ]);
  expect((await t.flusher.tick()).partitions[0]).toMatchObject({ rows: 0, deadLettered: 2 });

  // "The fix", then the redrive of both.
  await ctx.db.pool.query('ALTER TABLE packages DROP CONSTRAINT refuse_fixable');
  expect(await t.buffer.redrive(await t.buffer.deadLetters([0]))).toBe(2);
  expect((await t.flusher.tick()).partitions[0]).toMatchObject({ rows: 1, newRows: 1, deadLettered: 1 });

  const { rows } = await ctx.db.pool.query<{ first_seen_at: Date }>(
    'SELECT first_seen_at FROM packages WHERE name = $1',
    [fixable.name],
  );
  expect(rows.map((r) => r.first_seen_at.getTime())).toEqual([1_600_000_000_000]);
  expect((await t.buffer.deadLetters([0])).map((l) => l.key)).toEqual([POISON.badName]);
  expect(await flushState(ctx.db.pool, ctx.redis, ctx.keys, 1)).toMatchObject({
    pending: 0,
    dead: 1,
    queued: 1,
  });
});

test('an entry whose first-seen time no Date can hold is flushed stamped now instead of stalling every round', async () => {
  const t = testFlusher(ctx);
  await ctx.db.pool.query('TRUNCATE packages, analysis_queue CASCADE');
  const odd = pkg(1, 'oddtime');
  const good = await bufferPackages(t.buffer, 50, 'besideodd');
  await t.buffer.add([{ key: packageKey(odd), payload: { t: 1e20 } }]);

  const before = Date.now();
  const r = await t.flusher.tick();
  expect(r.error).toBeNull();
  const s = await flushState(ctx.db.pool, ctx.redis, ctx.keys, 1);
  expect(s.storedKeys).toEqual([...good, packageKey(odd)].sort());
  expect(s).toMatchObject({ pending: 0, queued: 51 });
  const { rows } = await ctx.db.pool.query<{ first_seen_at: Date }>(
    'SELECT first_seen_at FROM packages WHERE name = $1',
    [odd.name],
  );
  expect(rows[0]?.first_seen_at.getTime()).toBeGreaterThanOrEqual(before - 1000);
});
