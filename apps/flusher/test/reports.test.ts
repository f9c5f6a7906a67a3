import { Pool } from 'pg';
import { packageKey, type PackageRef } from '@safepkg/core';
import { flushState, pkg, pkgs, storedReports, totalStoredReports, useTestContext } from '@safepkg/testkit';
import { Backoff } from '../src/backoff';
import { countStatements, counterValue, testFlusher } from './helpers';

const PARTITIONS = 4;
const ctx = useTestContext({ bufferPartitions: PARTITIONS, flushBatchSize: 100 });
const state = () => flushState(ctx.db.pool, ctx.redis, ctx.keys, PARTITIONS);

beforeEach(async () => {
  await ctx.db.pool.query('TRUNCATE packages, analysis_queue, report_flushes CASCADE');
  for (let p = 0; p < PARTITIONS; p++) await ctx.redis.del(...Object.values(ctx.keys.partition(p)));
});

/** What a check does for its packages, in its order: buffer the unknown ones, then count them all. */
async function check(t: ReturnType<typeof testFlusher>, refs: readonly PackageRef[], now: number) {
  const keys = [...new Set(refs.map(packageKey))];
  await t.buffer.add(keys.map((key) => ({ key, payload: { t: now } })));
  await t.reports.add(keys, now);
}

test('deltas of packages still in the buffer ride the rounds that insert them: exact counts, no extra transaction', async () => {
  const t = testFlusher(ctx);
  const refs = pkgs(0, 450, 'ride');
  // Three checks over overlapping sets: counts 1, 2 or 3 per package, all still pending.
  await check(t, refs, 1_000);
  await check(t, refs.slice(0, 300), 2_000);
  await check(t, refs.slice(0, 100), 3_000);
  const r = await t.flusher.tick();
  expect(r.error).toBeNull();
  // 450 entries in rounds of 100: 5 transactions, the deltas in the last one.
  expect(t.store.inserts).toBe(5);
  expect(r.reports).toBe(450 + 300 + 100);
  const stored = await storedReports(ctx.db.pool);
  refs.forEach((ref, i) => {
    expect(stored.get(packageKey(ref))).toEqual(
      i < 100
        ? { reports: 3, lastSeenAt: 3_000 }
        : i < 300
          ? { reports: 2, lastSeenAt: 2_000 }
          : { reports: 1, lastSeenAt: 1_000 },
    );
  });
  expect(await state()).toMatchObject({ pending: 0, reportKeys: 0 });
  expect(await counterValue(t.metrics.reports)).toBe(850);
  expect(await counterValue(t.metrics.reportSets, { result: 'applied' })).toBe(PARTITIONS);
  expect(await counterValue(t.metrics.reportsUnmatched)).toBe(0);
});

test('a tick with deltas and no entries is one statement; a tick with nothing is none', async () => {
  const pool = new Pool({ connectionString: ctx.db.url, max: 2 });
  const statements = countStatements(pool);
  try {
    const t = testFlusher(ctx, { pool });
    const refs = pkgs(0, 40, 'known');
    await check(t, refs, 1_000);
    await t.flusher.tick();
    const before = statements.count;
    // The packages are stored now: the next checks add deltas only.
    await t.reports.add(refs.map(packageKey), 5_000);
    expect((await t.flusher.tick()).reports).toBe(40);
    expect(statements.count - before).toBe(1);
    expect((await t.flusher.tick()).rounds).toBe(0);
    expect(statements.count - before).toBe(1);
    const stored = await storedReports(ctx.db.pool);
    expect(refs.every((ref) => stored.get(packageKey(ref))?.reports === 2)).toBe(true);
    expect(stored.get(packageKey(refs[0] as PackageRef))?.lastSeenAt).toBe(5_000);
  } finally {
    await pool.end();
  }
});

test('a round PostgreSQL refuses for its data is halved without the deltas, which follow in their own transaction', async () => {
  const t = testFlusher(ctx, { config: { flushBatchSize: 5000 } });
  const refs = pkgs(0, 200, 'halved');
  await check(t, refs, 1_000);
  // A poison entry that bypassed the API: never counted, but it splits the round.
  await t.buffer.add([{ key: `9lives.poison:1:${pkg(1).signature}`, payload: { t: 1 } }]);
  const r = await t.flusher.tick();
  expect(r.error).toBeNull();
  expect((await state()).dead).toBe(1);
  expect(r.reports).toBe(200);
  expect(await totalStoredReports(ctx.db.pool)).toBe(200);
  expect(await state()).toMatchObject({ pending: 0, reportKeys: 0 });
});

test('a crash after COMMIT but before the in-flight set is dropped: the next tick finds it applied and adds nothing', async () => {
  const refs = pkgs(0, 120, 'crashclear');
  let crash = true;
  const t = testFlusher(ctx, {
    deps: {
      backoff: new Backoff(1, 1, () => 0),
      checkpoint: (point) => {
        if (point === 'before-reports-clear' && crash) {
          crash = false;
          throw new Error('simulated crash at before-reports-clear');
        }
      },
    },
  });
  await check(t, refs, 1_000);
  expect((await t.flusher.tick()).error).toMatch(/simulated crash/);
  // Committed, yet still in flight in Redis.
  expect(await totalStoredReports(ctx.db.pool)).toBe(120);
  expect((await state()).reportKeys).toBeGreaterThan(0);
  await t.reports.add(refs.slice(0, 10).map(packageKey), 2_000);

  const r = await t.flusher.tick();
  expect(r.error).toBeNull();
  // The re-taken set was refused by the ledger; the 10 new reports were left live for the next tick.
  expect(await counterValue(t.metrics.reportSets, { result: 'already_applied' })).toBeGreaterThan(0);
  expect(await totalStoredReports(ctx.db.pool)).toBe(120);
  await t.flusher.tick();
  expect(await totalStoredReports(ctx.db.pool)).toBe(130);
  expect(await state()).toMatchObject({ pending: 0, reportKeys: 0 });
});

test('a partition whose lease is lost has its set left in flight for the next holder', async () => {
  const lock = ctx.keys.partition(0).lock;
  let stolen = false;
  const t = testFlusher(ctx, {
    config: { bufferPartitions: 1 },
    deps: {
      backoff: new Backoff(1, 1, () => 0),
      checkpoint: async (point) => {
        if (point === 'reports-taken' && !stolen) {
          stolen = true;
          await ctx.redis.set(lock, 'another-flusher', 'PX', 30_000);
        }
      },
    },
  });
  const refs = pkgs(0, 250, 'leaselost');
  await check(t, refs, 1_000);
  // Renewal between rounds notices the theft; nothing of the partition is written after that.
  const first = await t.flusher.tick();
  expect(first.error).toMatch(/lease on partition 0 was lost/);
  // Round 1 (100 packages) was written before the theft was noticed, each new row with its count;
  // the set itself stays in flight, and its UPDATE must later skip those 100 (their rows carry its tag).
  expect(await totalStoredReports(ctx.db.pool)).toBe(100);
  expect(await ctx.redis.exists(ctx.keys.partition(0).reportsInflightId)).toBe(1);
  await ctx.redis.del(lock);
  expect((await t.flusher.tick()).error).toBeNull();
  expect(await totalStoredReports(ctx.db.pool)).toBe(refs.length);
  expect(await state()).toMatchObject({ pending: 0, reportKeys: 0 });
});

test('two flushers with no lease at all, racing over the same sets, store every report once', async () => {
  const a = testFlusher(ctx, { deps: { leases: false } });
  const b = testFlusher(ctx, { deps: { leases: false } });
  const refs = pkgs(0, 600, 'nolease');
  let sent = 0;
  for (let round = 0; round < 6; round++) {
    const slice = refs.slice(0, 100 * (round + 1));
    await check(a, slice, 1_000 + round);
    sent += slice.length;
    await Promise.all([a.flusher.tick(), b.flusher.tick()]);
  }
  await a.flusher.tick();
  await b.flusher.tick();
  expect(await totalStoredReports(ctx.db.pool)).toBe(sent);
  const stored = await storedReports(ctx.db.pool);
  refs.forEach((ref, i) => expect(stored.get(packageKey(ref))?.reports).toBe(6 - Math.floor(i / 100)));
  expect(await state()).toMatchObject({ pending: 0, reportKeys: 0 });
});
