import {
  KeySchema,
  PackageStore,
  ReportBuffer,
  applyReportSets,
  packageKey,
  partitionOf,
  type PackageRef,
} from '@safepkg/core';
import { pkgs, storedReports, useTestContext } from '@safepkg/testkit';

const ctx = useTestContext();

// Each test counts under its own sub-prefix, so tests never see each other's partitions.
let tests = 0;
function reportsFor(partitions: number) {
  const keys = new KeySchema(`${ctx.config.keyPrefix}_${tests++}`);
  return { keys, reports: new ReportBuffer(ctx.redis, keys, partitions) };
}

/** Inserts packages straight into PostgreSQL (reports 0), as a flush of them would. */
async function store(refs: readonly PackageRef[], at = new Date(1_000)) {
  await new PackageStore(ctx.db.pool).insertBatch(refs.map((ref) => ({ ref, firstSeenAt: at })));
}

describe('reports-add and take', () => {
  test('counts each key once per call, keeps the latest time, and take moves the whole set under flush id 1', async () => {
    const { keys, reports } = reportsFor(1);
    const k = keys.partition(0);
    const refs = pkgs(0, 1000, 'radd');
    const all = refs.map(packageKey);
    // 1,000 keys in one call: the script's HSET runs in chunks.
    await reports.add(all, 5_000);
    await reports.add(all.slice(0, 10), 7_000);
    await reports.add(all.slice(0, 3), 6_000);
    expect(await ctx.redis.hget(k.reports, `n:${all[0]}`)).toBe('3');
    expect(await ctx.redis.hget(k.reports, `n:${all[500]}`)).toBe('1');
    // Last writer wins in Redis (the latest check to arrive); PostgreSQL keeps the greatest.
    expect(await ctx.redis.hget(k.reports, `t:${all[0]}`)).toBe('6000');
    expect(await ctx.redis.hget(k.reports, 'total')).toBe('1013');
    expect(await ctx.redis.hget(k.reports, 'since')).toBe('5000');
    expect(await reports.stats([0], 8_000)).toEqual([{ partition: 0, buffered: 1013, oldestAgeMs: 3_000 }]);
    expect(await reports.pendingFor(all[0] as string)).toEqual({ count: 3, lastSeenAt: 6_000 });

    const set = await reports.take(0);
    expect(set?.flushId).toBe(1);
    expect(set?.deltas).toHaveLength(1000);
    const byKey = new Map(set?.deltas.map((d) => [d.key, d]));
    expect(byKey.get(all[0] as string)).toEqual({ key: all[0], count: 3, lastSeenAt: 6_000 });
    expect(byKey.get(all[999] as string)).toEqual({ key: all[999], count: 1, lastSeenAt: 5_000 });
    expect(await ctx.redis.exists(k.reports)).toBe(0);
    // Still buffered while in flight: the stats and the package view count it.
    expect(await reports.stats([0], 8_000)).toEqual([{ partition: 0, buffered: 1013, oldestAgeMs: 3_000 }]);
  });

  test('addGroups: each group is split by partition; every package gets the count and time of its group', async () => {
    const { keys, reports } = reportsFor(2);
    const all = pkgs(0, 40, 'rgroups').map(packageKey);
    const deltas = all.map((key, i) => ({ key, count: 1 + (i % 3), lastSeenAt: 9_000 + (i % 2) * 500 }));
    // Six groups (count x time), each spanning both partitions.
    const groups = new Map<string, { count: number; lastSeenAt: number; keys: string[] }>();
    for (const d of deltas) {
      const id = `${d.count}/${d.lastSeenAt}`;
      if (!groups.has(id)) groups.set(id, { count: d.count, lastSeenAt: d.lastSeenAt, keys: [] });
      groups.get(id)?.keys.push(d.key);
    }
    expect(groups.size).toBe(6);
    await reports.addGroups([...groups.values()]);
    for (const d of deltas) {
      const h = keys.partition(partitionOf(d.key, 2)).reports;
      expect(await ctx.redis.hmget(h, `n:${d.key}`, `t:${d.key}`)).toEqual([
        String(d.count),
        String(d.lastSeenAt),
      ]);
    }
    const totals = await Promise.all(
      [0, 1].map((p) => ctx.redis.hmget(keys.partition(p).reports, 'total', 'since')),
    );
    expect(totals.reduce((a, [t]) => a + Number(t), 0)).toBe(deltas.reduce((a, d) => a + d.count, 0));
    for (const [, since] of totals) expect(since).toBe('9000');
  });

  test('a second take hands out the same in-flight set; new deltas wait live; clear is compare-and-delete', async () => {
    const { keys, reports } = reportsFor(1);
    const k = keys.partition(0);
    const [a, b] = pkgs(0, 2, 'rtake').map(packageKey) as [string, string];
    expect(await reports.take(0)).toBeNull();
    await reports.add([a], 1_000);
    const first = await reports.take(0);
    await reports.add([a, b], 2_000);
    const again = await reports.take(0);
    expect(again).toEqual(first);
    expect(again?.deltas).toEqual([{ key: a, count: 1, lastSeenAt: 1_000 }]);
    expect(await reports.pendingFor(a)).toEqual({ count: 2, lastSeenAt: 2_000 });

    const { epoch, tag } = first as NonNullable<typeof first>;
    expect(await reports.clear({ partition: 0, epoch, tag, flushId: 99 })).toBe(false);
    expect(await ctx.redis.exists(k.reportsInflight)).toBe(1);
    expect(await reports.clear({ partition: 0, epoch, tag, flushId: 1 })).toBe(true);
    expect(await ctx.redis.exists(k.reportsInflight, k.reportsInflightId)).toBe(0);
    // A slow second clear of the same set must not drop the next one.
    const next = await reports.take(0);
    expect(next).toMatchObject({ epoch, flushId: 2 });
    expect(next?.tag).not.toBe(tag);
    expect(await reports.clear({ partition: 0, epoch, tag, flushId: 1 })).toBe(false);
    expect(next?.deltas.sort((x, y) => x.key.localeCompare(y.key))).toEqual(
      [
        { key: a, count: 1, lastSeenAt: 2_000 },
        { key: b, count: 1, lastSeenAt: 2_000 },
      ].sort((x, y) => x.key.localeCompare(y.key)),
    );
  });

  test('keys of one call spread over partitions land each in its own partition', async () => {
    const { keys, reports } = reportsFor(4);
    const all = pkgs(0, 200, 'rspread').map(packageKey);
    await reports.add(all, 1);
    let total = 0;
    for (let p = 0; p < 4; p++) {
      const fields = await ctx.redis.hkeys(keys.partition(p).reports);
      const mine = fields.filter((f) => f.startsWith('n:')).map((f) => f.slice(2));
      expect(mine.every((key) => partitionOf(key, 4) === p)).toBe(true);
      total += mine.length;
    }
    expect(total).toBe(200);
  });
});

describe('applyReportSets (the ledger)', () => {
  test('a set is applied once: a re-flush of its id, or an older id, adds nothing', async () => {
    const refs = pkgs(0, 3, 'rledger');
    await store(refs);
    const [a, b, c] = refs.map(packageKey) as [string, string, string];
    const set = {
      partition: 5,
      epoch: 'e1',
      tag: '7',
      flushId: 7,
      deltas: [
        { key: a, count: 4, lastSeenAt: 50_000 },
        { key: b, count: 1, lastSeenAt: 60_000 },
      ],
    };
    expect(await applyReportSets(ctx.db.pool, [set])).toMatchObject({
      applied: [5],
      skipped: [],
      updated: 2,
      unmatched: 0,
      reports: 5,
    });
    expect(await applyReportSets(ctx.db.pool, [set])).toMatchObject({
      applied: [],
      skipped: [5],
      reports: 0,
    });
    const older = {
      partition: 5,
      epoch: 'e1',
      tag: '7',
      flushId: 6,
      deltas: [{ key: c, count: 9, lastSeenAt: 1 }],
    };
    expect(await applyReportSets(ctx.db.pool, [older])).toMatchObject({ applied: [], skipped: [5] });
    const stored = await storedReports(ctx.db.pool);
    expect(stored.get(a)).toEqual({ reports: 4, lastSeenAt: 50_000 });
    expect(stored.get(b)).toEqual({ reports: 1, lastSeenAt: 60_000 });
    expect(stored.get(c)).toEqual({ reports: 0, lastSeenAt: 1_000 });
    // last_seen_at only moves forward.
    await applyReportSets(ctx.db.pool, [
      { partition: 5, epoch: 'e1', tag: '7', flushId: 8, deltas: [{ key: a, count: 1, lastSeenAt: 10 }] },
    ]);
    expect((await storedReports(ctx.db.pool)).get(a)).toEqual({ reports: 5, lastSeenAt: 50_000 });
    // A Redis that came back empty restarts the ids at 1 under a new epoch: applied, not mistaken for set 1.
    expect(
      await applyReportSets(ctx.db.pool, [
        { partition: 5, epoch: 'e2', tag: '7', flushId: 1, deltas: [{ key: a, count: 1, lastSeenAt: 10 }] },
      ]),
    ).toMatchObject({ applied: [5], reports: 1 });
  });

  test('an emptied Redis gets a new epoch, so its restarted flush ids stay distinct', async () => {
    const { keys, reports } = reportsFor(1);
    const [a] = pkgs(0, 1, 'repoch').map(packageKey) as [string];
    await reports.add([a], 1);
    const first = await reports.take(0);
    await reports.clear(first as NonNullable<typeof first>);
    await ctx.redis.del(keys.partition(0).reportsFlushId);
    await reports.add([a], 2);
    const second = await reports.take(0);
    expect(second?.flushId).toBe(1);
    expect(second?.epoch).not.toBe(first?.epoch);
  });

  test('two transactions applying the same set at once add it once', async () => {
    const refs = pkgs(0, 50, 'rconcurrent');
    await store(refs);
    const set = {
      partition: 3,
      epoch: 'e1',
      tag: '7',
      flushId: 1,
      deltas: refs.map((r) => ({ key: packageKey(r), count: 2, lastSeenAt: 9_000 })),
    };
    const [x, y] = await Promise.all([ctx.db.pool.connect(), ctx.db.pool.connect()]);
    try {
      await x.query('BEGIN');
      await y.query('BEGIN');
      const first = await applyReportSets(x, [set]);
      // y's ledger upsert waits on x's row lock; once x commits it sees the mark and skips.
      const second = applyReportSets(y, [set]);
      await x.query('COMMIT');
      const late = await second;
      await y.query('COMMIT');
      expect(first.applied).toEqual([3]);
      expect(late).toMatchObject({ applied: [], skipped: [3], reports: 0 });
    } finally {
      x.release();
      y.release();
    }
    const stored = await storedReports(ctx.db.pool);
    expect(refs.every((r) => stored.get(packageKey(r))?.reports === 2)).toBe(true);
  });

  test('deltas for a package PostgreSQL does not hold are counted as unmatched, malformed keys reported', async () => {
    const [known, missing] = pkgs(0, 2, 'runmatched') as [PackageRef, PackageRef];
    await store([known]);
    const r = await applyReportSets(ctx.db.pool, [
      {
        partition: 9,
        epoch: 'e1',
        tag: '7',
        flushId: 1,
        deltas: [
          { key: packageKey(known), count: 1, lastSeenAt: 2_000 },
          { key: packageKey(missing), count: 1, lastSeenAt: 2_000 },
          { key: 'not a key', count: 1, lastSeenAt: 2_000 },
        ],
      },
    ]);
    expect(r).toMatchObject({ applied: [9], updated: 1, unmatched: 1, reports: 1, malformed: ['not a key'] });
  });

  test('flushRound applies the sets in the same transaction as the insert, so new packages get their deltas', async () => {
    const refs = pkgs(0, 20, 'rround');
    const s = new PackageStore(ctx.db.pool);
    const set = {
      partition: 11,
      epoch: 'e1',
      tag: '7',
      flushId: 1,
      deltas: refs.map((r, i) => ({ key: packageKey(r), count: i + 1, lastSeenAt: 3_000 })),
    };
    const out = await s.flushRound(
      refs.map((ref) => ({ ref, firstSeenAt: new Date(2_000) })),
      [set],
    );
    expect(out.inserted).toHaveLength(20);
    expect(out.reports).toMatchObject({ applied: [11], updated: 20, unmatched: 0, reports: 210 });
    const stored = await storedReports(ctx.db.pool);
    expect(refs.map((r) => stored.get(packageKey(r))?.reports)).toEqual(refs.map((_, i) => i + 1));
    expect(stored.get(packageKey(refs[0] as PackageRef))?.lastSeenAt).toBe(3_000);

    // A failing round (a CHECK violation) rolls back the ledger row with it: the set applies later.
    const bad = { ref: { name: 'x', versionCode: 1, signature: 'nothex' }, firstSeenAt: new Date(1) };
    const next = { ...set, flushId: 2 };
    await expect(s.flushRound([bad], [next])).rejects.toMatchObject({ code: '23514' });
    expect(await s.flushRound([], [next])).toMatchObject({ reports: { applied: [11], reports: 210 } });
  });

  test('a package inserted with its count from a set is not counted again by that set, even re-flushed', async () => {
    const refs = pkgs(0, 4, 'rtagged');
    const s = new PackageStore(ctx.db.pool);
    const set = {
      partition: 12,
      epoch: 'e1',
      flushId: 1,
      tag: '424242',
      deltas: refs.map((r) => ({ key: packageKey(r), count: 3, lastSeenAt: 9_000 })),
    };
    // Two of the four are inserted by a round with their counts (a crash then loses what the flusher knew).
    const report = { count: 3, lastSeenAt: 9_000, tag: set.tag };
    await s.flushRound(
      refs.slice(0, 2).map((ref) => ({ ref, firstSeenAt: new Date(1_000), report })),
      [],
    );
    // A re-flush of the same entries inserts nothing, so it adds nothing either.
    await s.flushRound(
      refs.slice(0, 2).map((ref) => ({ ref, firstSeenAt: new Date(1_000), report })),
      [],
    );
    await s.insertBatch(refs.slice(2).map((ref) => ({ ref, firstSeenAt: new Date(1_000) })));
    // The whole set arrives later (as after a crash): only the two rows not stamped with its tag are updated.
    expect(await applyReportSets(ctx.db.pool, [set])).toMatchObject({ updated: 2, unmatched: 0, reports: 6 });
    const stored = await storedReports(ctx.db.pool);
    expect(refs.map((r) => stored.get(packageKey(r)))).toEqual(
      refs.map(() => ({ reports: 3, lastSeenAt: 9_000 })),
    );
  });
});
