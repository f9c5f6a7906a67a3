import type { Pool } from 'pg';
import { bufferPackages, flushState, useTestContext, type TcpProxy } from '@safepkg/testkit';
import { Backoff } from '../src/backoff';
import { counterValue, proxiedPool, testFlusher } from './helpers';

const ctx = useTestContext({
  bufferPartitions: 2,
  flushBatchSize: 100,
  flushIntervalMs: 1000,
  flushBackoffMaxMs: 8000,
});
let proxy: TcpProxy;
let pool: Pool;
let closeProxied: (() => Promise<void>) | undefined;

beforeAll(async () => {
  ({ proxy, pool, close: closeProxied } = await proxiedPool(ctx));
});

afterAll(async () => {
  await closeProxied?.();
});

test('PostgreSQL unreachable: nothing is written, dropped or dead-lettered; ticks back off exponentially until it is back', async () => {
  let now = 0;
  const backoff = new Backoff(
    ctx.config.flushIntervalMs,
    ctx.config.flushBackoffMaxMs,
    () => 1,
    () => now,
  );
  let cutOnSecondRead = false;
  let reads = 0;
  const t = testFlusher(ctx, {
    pool,
    deps: {
      backoff,
      checkpoint: (point) => {
        if (point === 'after-read' && cutOnSecondRead && ++reads === 2) proxy.block();
      },
    },
  });
  const keys = await bufferPackages(t.buffer, 500, 'pgdown');
  const state = () => flushState(ctx.db.pool, ctx.redis, ctx.keys, 2);

  proxy.block();
  // With the random source pinned at 1, each wait is the whole ceiling: 2 s, 4 s, 8 s, then the 8 s cap.
  for (const delay of [2000, 4000, 8000, 8000]) {
    const r = await t.flusher.tick();
    expect(r.error).not.toBeNull();
    expect(r.skipped).toBeNull();
    // Until the chosen delay has passed, ticks do not even try.
    now += delay - 1;
    expect((await t.flusher.tick()).skipped).toBe('backoff');
    now += 1;
  }
  expect(backoff.consecutiveFailures).toBe(4);
  expect(await counterValue(t.metrics.failures, { reason: 'unavailable' })).toBe(4);
  expect(await state()).toMatchObject({ storedKeys: [], pending: 500, dead: 0, leases: 0 });

  // Back, but it goes away again in the middle of the flush: the batch in flight stays pending.
  proxy.unblock();
  cutOnSecondRead = true;
  const cut = await t.flusher.tick();
  expect(cut.error).not.toBeNull();
  const mid = await state();
  expect(mid).toMatchObject({ dead: 0, leases: 0, queued: 100 });
  expect(mid.storedKeys.length + mid.pending).toBe(500);

  proxy.unblock();
  cutOnSecondRead = false;
  now += 60_000;
  const ok = await t.flusher.tick();
  expect(ok.error).toBeNull();
  expect(backoff.consecutiveFailures).toBe(0);
  const s = await state();
  expect(s.storedKeys).toEqual([...keys].sort());
  expect(s).toMatchObject({ pending: 0, dead: 0, queued: 500, queuedDistinct: 500, leases: 0 });
});
