import { useTestContext, bufferPackages, waitFor } from '@safepkg/testkit';
import { analyseQueued, freshCase, queueTotals, startFlusherProcess, waitDrained } from './flusher-helpers';

// Small batches so that a flush has several; a short lease so that the one a killed flusher leaves expires soon.
const ctx = useTestContext({
  bufferPartitions: 2,
  flushBatchSize: 200,
  flushIntervalMs: 100,
  lockTtlMs: 1000,
});
const N = 1000;

/**
 * What each crash point leaves behind in the first partition flushed (about 500 of the
 * 1,000 entries, read 200 at a time), before a normal flusher takes over.
 */
const cases = [
  { point: 'lease-held', stored: 0, pending: N },
  { point: 'after-read', stored: 0, pending: N },
  // Batch 1 written and confirmed, batch 2 written but not confirmed: 200 entries are in both places.
  { point: 'after-commit:2', stored: 400, pending: N - 200 },
  // Batch 1 written; the first of its two compare-and-delete calls (100 entries) ran.
  { point: 'mid-confirm', stored: 200, pending: N - 100 },
] as const;

test.each(cases)(
  'killed (-9) at $point: a normal flusher finishes, nothing lost, each package queued once',
  async ({ point, stored, pending }) => {
    const c = await freshCase(ctx, point.replace(/[^a-z0-9]/g, ''));
    const keys = await bufferPackages(c.buffer, N, 'crash');

    const crashing = await startFlusherProcess(c.config, { SAFEPKG_TEST_CRASH_AT: point });
    const exit = await crashing.exited;
    expect(exit).toEqual({ code: null, signal: 'SIGKILL' });
    const left = await c.state();
    expect({ stored: left.storedKeys.length, pending: left.pending, dead: left.dead }).toEqual({
      stored,
      pending,
      dead: 0,
    });
    // The dead flusher's leases are still there (they expire after LOCK_TTL_MS): a tick takes every partition's at once.
    expect(left.leases).toBe(2);
    // An analyser takes what was queued so far; a re-flush must not queue those again.
    const taken = await analyseQueued(ctx);
    expect(taken).toHaveLength(stored);

    const normal = await startFlusherProcess(c.config);
    try {
      await waitDrained(c.state, N);
      const s = await c.state();
      expect(s.storedKeys).toEqual([...keys].sort());
      expect(s).toMatchObject({ pending: 0, dead: 0 });
      expect(await queueTotals(ctx, taken)).toEqual({ total: N, distinct: N, orphans: 0 });
    } finally {
      await normal.kill('SIGTERM');
    }
    await waitFor(async () => (await c.state()).leases === 0, { what: 'leases released' });
  },
);
