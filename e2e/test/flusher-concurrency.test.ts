import { bufferPackages, useTestContext, waitFor, type ManagedProcess } from '@safepkg/testkit';
import {
  analyseQueued,
  freshCase,
  loggedFlushes,
  queueTotals,
  startFlusherProcess,
  waitDrained,
} from './flusher-helpers';

const ctx = useTestContext({
  bufferPartitions: 2,
  flushBatchSize: 50,
  flushIntervalMs: 100,
  lockTtlMs: 1000,
});

test('two flushers with no lease at all, flushing the same partitions at once, lose nothing and queue each package once', async () => {
  const N = 20_000;
  const c = await freshCase(ctx, 'nolease');
  // Both are up and ticking before the load arrives, so that they work through the same entries together.
  const flushers = await Promise.all(
    [0, 1].map(() => startFlusherProcess(c.config, { SAFEPKG_TEST_NO_LEASE: '1' })),
  );
  try {
    await Promise.all(
      flushers.map((f) =>
        waitFor(() => f.output().includes('safepkg flusher started'), {
          what: 'flusher start',
          timeoutMs: 15_000,
        }),
      ),
    );
    const keys = await bufferPackages(c.buffer, N, 'nolease');
    await waitDrained(c.state, N);
    const s = await c.state();
    expect(s.storedKeys).toEqual([...keys].sort());
    expect(s).toMatchObject({
      pending: 0,
      dead: 0,
      leases: 0,
      queued: N,
      queuedDistinct: N,
      queueOrphans: 0,
    });

    // The two really overlapped: both wrote, and together they wrote more entries than there
    // were (the same batches twice), yet only N of those writes inserted anything.
    const logged = () => flushers.map((f) => loggedFlushes(f.output()));
    const sum = (k: 'rows' | 'newRows') => logged().reduce((a, l) => a + l[k], 0);
    // A partition's log line comes after its flush: wait for the last one rather than sleep.
    await waitFor(() => sum('newRows') === N, { what: 'the flush log lines', timeoutMs: 5000 });
    for (const l of logged()) expect(l.rows).toBeGreaterThan(0);
    expect(sum('rows')).toBeGreaterThan(N);
    console.log(
      `no-lease overlap: rows written ${logged()
        .map((l) => l.rows)
        .join(' + ')}, new ${logged()
        .map((l) => l.newRows)
        .join(' + ')}`,
    );
  } finally {
    await Promise.all(flushers.map((f) => f.kill('SIGTERM')));
  }
});

test('random kill -9 of flushers during a load of buffered entries: nothing lost, each package queued once', async () => {
  const N = 8000;
  const c = await freshCase(ctx, 'kill9');
  const keys = await bufferPackages(c.buffer, N, 'kill9');
  const taken: string[] = [];
  const progress: number[] = [];
  let seed = 7;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;

  for (let kill = 0; kill < 3; kill++) {
    const before = (await c.state()).storedKeys.length;
    const f: ManagedProcess = await startFlusherProcess(c.config);
    // Kill it once it is visibly flushing, at a random moment of that flush.
    await waitFor(async () => (await c.state()).storedKeys.length > before, {
      what: `flusher ${kill} to make progress`,
    });
    await new Promise((r) => setTimeout(r, Math.floor(random() * 150)));
    expect(await f.kill('SIGKILL')).toEqual({ code: null, signal: 'SIGKILL' });
    const s = await c.state();
    progress.push(s.storedKeys.length);
    expect(s.dead).toBe(0);
    // Whatever is not stored is still pending (an entry may be in both: committed, not confirmed).
    expect(s.storedKeys.length + s.pending).toBeGreaterThanOrEqual(N);
    taken.push(...(await analyseQueued(ctx)));
  }
  expect(progress[2]).toBeLessThan(N);

  const last = await startFlusherProcess(c.config);
  try {
    await waitDrained(c.state, N);
    const s = await c.state();
    expect(s.storedKeys).toEqual([...keys].sort());
    expect(s).toMatchObject({ pending: 0, dead: 0 });
    expect(await queueTotals(ctx, taken)).toEqual({ total: N, distinct: N, orphans: 0 });
    console.log(`kill -9 after ${progress.join(', ')} of ${N} stored`);
  } finally {
    await last.kill('SIGTERM');
  }
});
