import { EvaluationStore, PackageStore, packageKey, type EvaluationInput } from '@safepkg/core';
import { pkgs, useTestContext } from '@safepkg/testkit';

const ctx = useTestContext();

function evaluationsFor(from: number, count: number, over: Partial<EvaluationInput> = {}): EvaluationInput[] {
  return pkgs(from, count, 'eval').map((p, i) => ({
    ...p,
    verdict: 'malicious',
    source: 'model',
    threatIndex: (i % 100) / 100,
    ...over,
  }));
}

async function statusOf(name: string) {
  const { rows } = await ctx.db.pool.query<{
    verdict: string | null;
    source: string | null;
    threat_index: number | null;
    rev: number;
  }>('SELECT verdict, source, threat_index, rev FROM packages WHERE name = $1', [name]);
  return rows[0];
}

test('a batch of 10,000 evaluations updates 10,000 packages through one statement-level trigger call', async () => {
  const store = new PackageStore(ctx.db.pool);
  const batch = evaluationsFor(0, 10_000);
  await store.insertBatch(batch.map((e) => ({ ref: e, firstSeenAt: new Date() })));
  const client = await ctx.db.pool.connect();
  try {
    await client.query('BEGIN');
    await client.query("SET LOCAL track_functions = 'pl'");
    const names = batch.map((e) => e.name);
    await client.query(
      `INSERT INTO evaluations (package_id, source, verdict, threat_index, created_by)
       SELECT p.id, 'model', 'malicious', 0.5, 'test' FROM packages p WHERE p.name = ANY($1::text[])`,
      [names],
    );
    const calls = await client.query<{ calls: string }>(
      "SELECT calls FROM pg_stat_xact_user_functions WHERE funcname = 'evaluations_apply'",
    );
    expect(calls.rows.map((r) => Number(r.calls))).toEqual([1]);
    const updated = await client.query<{ n: string }>(
      "SELECT count(*) AS n FROM packages WHERE verdict = 'malicious' AND source = 'model' AND rev = 1",
    );
    expect(Number(updated.rows[0]?.n)).toBe(10_000);
    await client.query('COMMIT');
  } finally {
    client.release();
  }
});

test('a later verdict of the same source replaces the earlier; manual outranks model; history is kept', async () => {
  const evaluations = new EvaluationStore(ctx.db.pool);
  const [p] = evaluationsFor(20_000, 1);
  if (!p) throw new Error('no package');

  await evaluations.record([{ ...p, source: 'model', verdict: 'suspicious', threatIndex: 0.4 }], 'model-v1');
  expect(await statusOf(p.name)).toEqual({
    verdict: 'suspicious',
    source: 'model',
    threat_index: 0.4,
    rev: 1,
  });

  await evaluations.record([{ ...p, source: 'model', verdict: 'malicious', threatIndex: 0.9 }], 'model-v2');
  expect(await statusOf(p.name)).toEqual({
    verdict: 'malicious',
    source: 'model',
    threat_index: 0.9,
    rev: 2,
  });

  await evaluations.record([{ ...p, source: 'manual', verdict: 'safe', threatIndex: 0 }], 'analyst');
  expect(await statusOf(p.name)).toEqual({ verdict: 'safe', source: 'manual', threat_index: 0, rev: 3 });

  // A later model verdict does not override the manual one, and changes nothing (rev stays).
  await evaluations.record([{ ...p, source: 'model', verdict: 'malicious', threatIndex: 1 }], 'model-v3');
  expect(await statusOf(p.name)).toEqual({ verdict: 'safe', source: 'manual', threat_index: 0, rev: 3 });

  // In one batch: manual wins over model whatever the order; of two manual ones the later wins.
  await evaluations.record(
    [
      { ...p, source: 'manual', verdict: 'suspicious', threatIndex: 0.5 },
      { ...p, source: 'model', verdict: 'safe', threatIndex: 0.1 },
      { ...p, source: 'manual', verdict: 'malicious', threatIndex: 0.8 },
    ],
    'analyst',
  );
  expect(await statusOf(p.name)).toMatchObject({ verdict: 'malicious', source: 'manual', rev: 4 });

  const history = await ctx.db.pool.query<{ created_by: string; verdict: string }>(
    `SELECT e.created_by, e.verdict FROM evaluations e JOIN packages p ON p.id = e.package_id
      WHERE p.name = $1 ORDER BY e.id`,
    [p.name],
  );
  expect(history.rows.map((r) => `${r.created_by}:${r.verdict}`)).toEqual([
    'model-v1:suspicious',
    'model-v2:malicious',
    'analyst:safe',
    'model-v3:malicious',
    'analyst:suspicious',
    'analyst:safe',
    'analyst:malicious',
  ]);
});

test('an evaluation of a package never seen inserts it; record returns the new status with its rev', async () => {
  const evaluations = new EvaluationStore(ctx.db.pool);
  const batch = evaluationsFor(30_000, 3, { source: 'manual', verdict: 'safe', threatIndex: 0.1 });
  const updated = await evaluations.record(batch, 'analyst');
  expect(updated.map((u) => packageKey(u)).sort()).toEqual(batch.map((b) => packageKey(b)).sort());
  expect(updated.every((u) => u.verdict === 'safe' && u.source === 'manual' && u.rev === 1)).toBe(true);
  // Evaluated packages are not waiting for analysis.
  const queued = await ctx.db.pool.query(
    'SELECT 1 FROM analysis_queue q JOIN packages p ON p.id = q.package_id WHERE p.name = ANY($1::text[])',
    [batch.map((b) => b.name)],
  );
  expect(queued.rowCount).toBe(0);
});

describe('analysis claims', () => {
  test('concurrent claimers never receive the same package; an evaluation removes it from the queue', async () => {
    const store = new PackageStore(ctx.db.pool);
    const evaluations = new EvaluationStore(ctx.db.pool);
    const fresh = pkgs(40_000, 300, 'claim');
    const inserted = await store.insertBatch(fresh.map((ref) => ({ ref, firstSeenAt: new Date() })));
    expect(inserted).toHaveLength(300);
    const names = new Set(fresh.map((f) => f.name));

    const claimers = await Promise.all(Array.from({ length: 6 }, () => evaluations.claim(60, 60_000)));
    const claimed = claimers.flat().filter((c) => names.has(c.name));
    const keys = claimed.map((c) => packageKey(c));
    expect(new Set(keys).size).toBe(keys.length);
    expect(claimed.every((c) => c.attempts === 1)).toBe(true);

    // Claimed packages are not handed out again while their claim lasts.
    const again = (await evaluations.claim(1000, 60_000)).filter((c) => names.has(c.name));
    expect(again.filter((c) => keys.includes(packageKey(c)))).toEqual([]);

    const first = claimed[0];
    if (!first) throw new Error('nothing claimed');
    await evaluations.record([{ ...first, verdict: 'safe', source: 'manual', threatIndex: 0 }], 'analyst');
    const left = await ctx.db.pool.query(
      'SELECT 1 FROM analysis_queue q JOIN packages p ON p.id = q.package_id WHERE p.name = $1',
      [first.name],
    );
    expect(left.rowCount).toBe(0);
  });

  test('a claim not completed before its lease ends is handed out again, attempts counted', async () => {
    const store = new PackageStore(ctx.db.pool);
    const evaluations = new EvaluationStore(ctx.db.pool);
    await ctx.db.pool.query('DELETE FROM analysis_queue');
    const [ref] = pkgs(50_000, 1, 'lease');
    if (!ref) throw new Error('no package');
    await store.insertBatch([{ ref, firstSeenAt: new Date() }]);

    const [first] = await evaluations.claim(10, 60_000);
    expect(first).toMatchObject({ name: ref.name, attempts: 1 });
    expect(await evaluations.claim(10, 60_000)).toEqual([]);

    // Expire the claim (what a crashed analyser leaves behind) instead of waiting for it.
    await ctx.db.pool.query("UPDATE analysis_queue SET claimed_until = now() - interval '1 second'");
    const [second] = await evaluations.claim(10, 60_000);
    expect(second).toMatchObject({ name: ref.name, attempts: 2 });
  });

  test('claims hand out the most reported packages first, ties oldest first, each with reports and lastSeenAt', async () => {
    const store = new PackageStore(ctx.db.pool);
    const evaluations = new EvaluationStore(ctx.db.pool);
    await ctx.db.pool.query('DELETE FROM analysis_queue');
    const refs = pkgs(60_000, 5, 'rank');
    await store.insertBatch(refs.map((ref) => ({ ref, firstSeenAt: new Date(1_000) })));
    // Queued in order 0..4; reports 2, 9, 2, 0, 9: expect 1, 4 (tie: 1 was queued first), 0, 2, 3.
    const reports = [2, 9, 2, 0, 9];
    for (const [i, ref] of refs.entries()) {
      await ctx.db.pool.query(
        `UPDATE analysis_queue q SET enqueued_at = now() - make_interval(secs => 100 - $4::int)
           FROM packages p WHERE p.id = q.package_id AND p.name = $1 AND p.version_code = $2 AND p.signature = $3`,
        [ref.name, ref.versionCode, ref.signature, i],
      );
      await ctx.db.pool.query(
        `UPDATE packages SET reports = $4, last_seen_at = to_timestamp($5)
          WHERE name = $1 AND version_code = $2 AND signature = $3`,
        [ref.name, ref.versionCode, ref.signature, reports[i], 10 + i],
      );
    }
    const first = await evaluations.claim(3, 60_000);
    expect(first.map((c) => c.name)).toEqual([1, 4, 0].map((i) => refs[i]?.name));
    expect(first[0]).toMatchObject({ reports: 9, lastSeenAt: new Date(11_000) });
    const rest = await evaluations.claim(10, 60_000);
    expect(rest.map((c) => [c.name, c.reports])).toEqual([
      [refs[2]?.name, 2],
      [refs[3]?.name, 0],
    ]);
  });
});
