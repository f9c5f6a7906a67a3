import { EvaluationStore, PackageStore, type EvaluationInput, type PackageRef } from '@safepkg/core';
import { pkgs, useTestContext } from '@safepkg/testkit';
import { Client } from 'pg';

const ctx = useTestContext();

test('concurrent evaluation batches over overlapping packages, in different orders, all succeed', async () => {
  const store = new PackageStore(ctx.db.pool);
  const evaluations = new EvaluationStore(ctx.db.pool);
  const refs = pkgs(0, 2000, 'evalrace');
  // Half of them already stored (flushed), half never seen (inserted by the evaluation).
  await store.insertBatch(refs.slice(0, 1000).map((ref) => ({ ref, firstSeenAt: new Date() })));
  const batch = (order: PackageRef[]): EvaluationInput[] =>
    order.map((r) => ({ ...r, verdict: 'malicious', source: 'model', threatIndex: 0.5 }));
  const orders = [
    refs,
    [...refs].reverse(),
    refs.filter((_, i) => i % 2 === 0),
    [...refs].reverse().filter((_, i) => i % 3 === 0),
  ];
  const results = await Promise.all(orders.map((o) => evaluations.record(batch(o), 'model')));
  results.forEach((r, i) => expect(r).toHaveLength(orders[i]?.length ?? -1));

  // Every evaluation was recorded, and each package's rev counts the batches that held it.
  const { rows } = await ctx.db.pool.query<{ evaluations: string; wrong: string }>(
    `SELECT (SELECT count(*) FROM evaluations) AS evaluations,
            (SELECT count(*) FROM packages p
              WHERE p.name LIKE 'com.evalrace.%'
                AND p.rev <> (SELECT count(*) FROM evaluations e WHERE e.package_id = p.id)) AS wrong`,
  );
  expect(Number(rows[0]?.evaluations)).toBe(orders.reduce((a, o) => a + o.length, 0));
  expect(Number(rows[0]?.wrong)).toBe(0);
});

test('a package the retention sweep deletes between the evaluation INSERT and its lock is inserted again, never dropped', async () => {
  const store = new PackageStore(ctx.db.pool);
  const evaluations = new EvaluationStore(ctx.db.pool);
  const [ref] = pkgs(0, 1, 'sweptrace') as [PackageRef];
  await store.insertBatch([{ ref, firstSeenAt: new Date(1_000) }]);
  // The sweeper: holds the row locked (its batch between the lock and the DELETE).
  // Its own connection: the test pool is small, and the evaluation and the polling need one each.
  const sweeper = new Client({ connectionString: ctx.db.url });
  await sweeper.connect();
  try {
    await sweeper.query('BEGIN');
    await sweeper.query('SELECT id FROM packages WHERE name = $1 FOR UPDATE', [ref.name]);
    // The evaluation's INSERT finds the (locked, not deleted) row and inserts nothing; its lock waits.
    const recorded = evaluations.record(
      [{ ...ref, verdict: 'malicious', source: 'manual', threatIndex: 1 }],
      'test',
    );
    for (;;) {
      const { rows } = await ctx.db.pool.query<{ n: string }>(
        `SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
      );
      if (Number(rows[0]?.n) > 0) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    await sweeper.query('DELETE FROM analysis_queue');
    await sweeper.query('DELETE FROM packages WHERE name = $1', [ref.name]);
    await sweeper.query('COMMIT');
    const rows = await recorded;
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ name: ref.name, verdict: 'malicious', source: 'manual' });
  } finally {
    await sweeper.end();
  }
  const { rows } = await ctx.db.pool.query<{ verdict: string; evaluations: string }>(
    `SELECT p.verdict, (SELECT count(*) FROM evaluations e WHERE e.package_id = p.id) AS evaluations
       FROM packages p WHERE p.name = $1`,
    [ref.name],
  );
  expect(rows).toEqual([{ verdict: 'malicious', evaluations: '1' }]);
});
