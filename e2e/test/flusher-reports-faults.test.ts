import { packageKey, ReportBuffer } from '@safepkg/core';
import { pkgs, storedReports, totalStoredReports, useTestContext, waitFor } from '@safepkg/testkit';
import { freshCase, startFlusherProcess, waitDrained } from './flusher-helpers';

// Small batches so that a flush has several rounds; a short lease so that the one a killed flusher leaves expires soon.
const ctx = useTestContext({
  bufferPartitions: 2,
  flushBatchSize: 200,
  flushIntervalMs: 100,
  lockTtlMs: 1000,
});
const N = 1000;

/**
 * What each crash point leaves of the reports. A package the flush inserts takes its whole count
 * with it (same row, same transaction); the sets' UPDATE for the rest runs in the round that
 * finishes the last partition (round 5 of 200 entries here). So at every point, each stored
 * package holds exactly its count, and the in-flight sets are still there.
 */
const cases = [
  { point: 'lease-held', storedRows: 0, inflight: 0 },
  { point: 'reports-taken', storedRows: 0, inflight: 2 },
  { point: 'after-read', storedRows: 0, inflight: 2 },
  { point: 'after-commit:2', storedRows: 400, inflight: 2 },
  // Every round reaches mid-confirm once (two compare-and-delete calls): the 3rd is in round 3.
  { point: 'mid-confirm:3', storedRows: 600, inflight: 2 },
  { point: 'before-reports-clear', storedRows: N, inflight: 2 },
] as const;

test.each(cases)(
  'killed (-9) at $point: a normal flusher finishes and stored reports equal the reports counted',
  async ({ point, storedRows, inflight }) => {
    const c = await freshCase(ctx, point.replace(/[^a-z0-9]/g, ''));
    const reports = new ReportBuffer(ctx.redis, c.keys, c.config.bufferPartitions);
    const refs = pkgs(0, N, 'rcrash');
    const keys = refs.map(packageKey);
    // Checks as the api makes them: buffer first, then count; three checks over overlapping sets.
    const sent = new Map<string, number>();
    const checkOf = async (slice: string[], now: number) => {
      await c.buffer.add(slice.map((key) => ({ key, payload: { t: now } })));
      await reports.add(slice, now);
      for (const k of slice) sent.set(k, (sent.get(k) ?? 0) + 1);
    };
    await checkOf(keys, 1_000);
    await checkOf(keys.slice(0, 600), 2_000);
    await checkOf(keys.slice(0, 50), 3_000);
    const total = N + 600 + 50;

    const crashing = await startFlusherProcess(c.config, { SAFEPKG_TEST_CRASH_AT: point });
    expect(await crashing.exited).toEqual({ code: null, signal: 'SIGKILL' });
    const partitionKeys = [0, 1].map((p) => c.keys.partition(p));
    const inflightLeft = (
      await Promise.all(partitionKeys.map((k) => ctx.redis.exists(k.reportsInflightId)))
    ).reduce((a, b) => a + b, 0);
    expect(inflightLeft).toBe(inflight);
    const early = await storedReports(ctx.db.pool);
    expect(early.size).toBe(storedRows);
    expect([...early].filter(([k, r]) => r.reports !== sent.get(k))).toEqual([]);
    if (storedRows === N) expect(await totalStoredReports(ctx.db.pool)).toBe(total);

    // More checks arrive while the dead flusher's sets wait: they go live, beside the in-flight ones.
    await checkOf(keys.slice(0, 10), 4_000);

    const normal = await startFlusherProcess(c.config);
    try {
      await waitDrained(c.state, N);
      await waitFor(async () => (await c.state()).reportKeys === 0, { what: 'report deltas flushed' });
      expect(await totalStoredReports(ctx.db.pool)).toBe(total + 10);
      const byKey = await storedReports(ctx.db.pool);
      expect(keys.filter((k) => byKey.get(k)?.reports !== sent.get(k))).toEqual([]);
      expect(byKey.get(keys[0] as string)?.lastSeenAt).toBe(4_000);
      expect(byKey.get(keys[N - 1] as string)?.lastSeenAt).toBe(1_000);
    } finally {
      await normal.kill('SIGTERM');
    }
  },
);
