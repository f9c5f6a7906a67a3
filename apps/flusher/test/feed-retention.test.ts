import { createLogger, EvaluationStore, VerdictFeed } from '@safepkg/core';
import { pkgs, useTestContext } from '@safepkg/testkit';
import { FeedRetention } from '../src/feed-retention';

const ctx = useTestContext();

test('prunes changes older than the retention at most once an hour', async () => {
  const refs = pkgs(0, 3, 'retention');
  await new EvaluationStore(ctx.db.pool).record(
    refs.map((r) => ({ ...r, verdict: 'malicious', source: 'model', threatIndex: 0.5 })),
    'model',
  );
  await ctx.db.pool.query(
    `UPDATE verdict_changes SET changed_at = now() - interval '10 days'
      WHERE id = (SELECT min(id) FROM verdict_changes)`,
  );
  let now = 1_000_000;
  const retention = new FeedRetention(
    new VerdictFeed(ctx.db.pool),
    7,
    createLogger({ logLevel: 'silent' }, 'test'),
    () => now,
  );
  expect(await retention.maybePrune()).toBe(1);
  await ctx.db.pool.query(`UPDATE verdict_changes SET changed_at = now() - interval '10 days'`);
  now += 3_599_000;
  expect(await retention.maybePrune()).toBeNull();
  now += 1_000;
  expect(await retention.maybePrune()).toBe(2);
  const { rows } = await ctx.db.pool.query<{ n: string }>('SELECT count(*) AS n FROM verdict_changes');
  expect(rows[0]?.n).toBe('0');
});
