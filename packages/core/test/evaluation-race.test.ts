import { EvaluationStore, PackageStore, type EvaluationInput, type PackageRef } from '@safepkg/core';
import { pkgs, useTestContext } from '@safepkg/testkit';

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
