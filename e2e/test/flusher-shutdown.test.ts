import { bufferPackages, useTestContext, waitFor } from '@safepkg/testkit';
import { freshCase, queueTotals, startFlusherProcess, waitDrained } from './flusher-helpers';

// A long lease: if the lock key disappears right after exit, the flusher released it; expiry cannot explain it.
const ctx = useTestContext({
  bufferPartitions: 2,
  flushBatchSize: 100,
  flushIntervalMs: 100,
  lockTtlMs: 60_000,
});

test('SIGTERM during a flush: the batch in hand is finished, the lease released, exit 0; a successor drains the rest', async () => {
  const N = 20_000;
  const c = await freshCase(ctx, 'term');
  const keys = await bufferPackages(c.buffer, N, 'term');
  const f = await startFlusherProcess(c.config);
  await waitFor(async () => (await c.state()).storedKeys.length > 0, { what: 'the flush to start' });

  f.child.kill('SIGTERM');
  const exit = await f.exited;
  const s = await c.state();
  expect(exit).toEqual({ code: 0, signal: null });
  expect(f.output()).toMatch(/"msg":"stopped"/);
  expect(s.leases).toBe(0);
  // It stopped mid-way, with every batch it wrote also confirmed: nothing is both stored and pending.
  expect(s.storedKeys.length).toBeLessThan(N);
  const pending = new Set<string>();
  for (let p = 0; p < c.config.bufferPartitions; p++) {
    for (const k of await ctx.redis.zrange(c.keys.partition(p).pending, '0', '-1')) pending.add(k);
  }
  expect(s.storedKeys.filter((k) => pending.has(k))).toEqual([]);
  expect(s.storedKeys.length + pending.size).toBe(N);
  console.log(`SIGTERM after ${s.storedKeys.length} of ${N} stored`);

  const next = await startFlusherProcess(c.config);
  try {
    await waitDrained(c.state, N);
    expect((await c.state()).storedKeys).toEqual([...keys].sort());
    expect(await queueTotals(ctx, [])).toEqual({ total: N, distinct: N, orphans: 0 });
  } finally {
    await next.kill('SIGTERM');
  }
});
