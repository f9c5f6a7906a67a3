import { Backoff } from '../src/backoff';
import { bufferPackages, flushState, useTestContext, waitFor } from '@safepkg/testkit';
import { counterValue, testFlusher } from './helpers';

const ctx = useTestContext({ bufferPartitions: 1, flushBatchSize: 100, lockTtlMs: 30_000 });
const state = () => flushState(ctx.db.pool, ctx.redis, ctx.keys, 1);

beforeEach(async () => {
  await ctx.db.pool.query('TRUNCATE packages, analysis_queue CASCADE');
  await ctx.redis.del(...Object.values(ctx.keys.partition(0)));
});

test('a lease stolen between batches stops the flush before its next PostgreSQL write', async () => {
  const lock = ctx.keys.partition(0).lock;
  let stolen = false;
  const t = testFlusher(ctx, {
    deps: {
      // No wait after the failed tick, so the second tick below runs at once.
      backoff: new Backoff(1, 1, () => 0),
      checkpoint: async (point) => {
        if (point === 'after-commit' && !stolen) {
          stolen = true;
          await ctx.redis.set(lock, 'another-flusher', 'PX', 30_000);
        }
      },
    },
  });
  await bufferPackages(t.buffer, 350, 'stolen');

  const first = await t.flusher.tick();
  expect(first.error).toMatch(/lease on partition 0 was lost/);
  expect(t.store.inserts).toBe(1);
  expect(await counterValue(t.metrics.leaseLosses)).toBe(1);
  // The committed batch was confirmed; the rest waits; the thief's lease was not released by the loser.
  expect(await state()).toMatchObject({ pending: 250, dead: 0, queued: 100 });
  expect((await state()).storedKeys).toHaveLength(100);
  expect(await ctx.redis.get(lock)).toBe('another-flusher');

  // While the other holder keeps it, this flusher does not touch the partition at all.
  const busy = await t.flusher.tick();
  expect(busy).toMatchObject({ error: null, leasesBusy: 1 });
  expect(t.store.inserts).toBe(1);

  await ctx.redis.del(lock);
  expect((await t.flusher.tick()).error).toBeNull();
  const s = await state();
  expect(s).toMatchObject({ pending: 0, dead: 0, queued: 350, queuedDistinct: 350, leases: 0 });
  expect(s.storedKeys).toHaveLength(350);
});

test('a lease lost during one long batch is noticed by the renewal timer and nothing of the batch is written', async () => {
  const lock = ctx.keys.partition(0).lock;
  const t = testFlusher(ctx, {
    config: { lockTtlMs: 1000 },
    deps: {
      checkpoint: async (point) => {
        if (point !== 'after-read') return;
        // The batch is "long": while it is in hand, another flusher takes the lease.
        await ctx.redis.set(lock, 'another-flusher', 'PX', 30_000);
        await waitFor(async () => (await counterValue(t.metrics.leaseLosses)) === 1, {
          what: 'the timer to notice the loss',
        });
      },
    },
  });
  await bufferPackages(t.buffer, 150, 'timer');

  const r = await t.flusher.tick();
  expect(r.error).toMatch(/lease on partition 0 was lost/);
  expect(t.store.inserts).toBe(0);
  expect(await state()).toMatchObject({ storedKeys: [], pending: 150, queued: 0 });
  expect(await ctx.redis.get(lock)).toBe('another-flusher');
});

test('the renewal timer keeps the lease through a batch that takes longer than LOCK_TTL_MS', async () => {
  const lock = ctx.keys.partition(0).lock;
  let heldAfterTtl: string | null = null;
  const t = testFlusher(ctx, {
    // TTL 3 s, renewed every 1 s, and a 4 s batch: a margin of 2 s for a busy machine.
    config: { lockTtlMs: 3000 },
    deps: {
      checkpoint: async (point) => {
        if (point !== 'after-read' || heldAfterTtl !== null) return;
        const token = await ctx.redis.get(lock);
        await new Promise((r) => setTimeout(r, 4000));
        heldAfterTtl = (await ctx.redis.get(lock)) === token ? 'held' : 'lost';
      },
    },
  });
  await bufferPackages(t.buffer, 150, 'long');

  const r = await t.flusher.tick();
  expect(heldAfterTtl).toBe('held');
  expect(r.error).toBeNull();
  expect(await counterValue(t.metrics.leaseLosses)).toBe(0);
  expect(await state()).toMatchObject({ pending: 0, queued: 150, leases: 0 });
});
