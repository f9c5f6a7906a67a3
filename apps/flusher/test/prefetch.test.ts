import type { Pool } from 'pg';
import { bufferPackages, flushState, useTestContext, waitFor, type TcpProxy } from '@safepkg/testkit';
import { RedisBuffer, type BufferEntry, type NewPackage, type ReportSet } from '@safepkg/core';
import { backoffWithoutWaits, CountingStore, proxiedPool, testFlusher } from './helpers';

const PARTITIONS = 2;
const BATCH = 100;
const ctx = useTestContext({ bufferPartitions: PARTITIONS, flushBatchSize: BATCH, lockTtlMs: 30_000 });
const state = () => flushState(ctx.db.pool, ctx.redis, ctx.keys, PARTITIONS);
let proxy: TcpProxy;
let pool: Pool;
let closeProxied: (() => Promise<void>) | undefined;

beforeAll(async () => {
  ({ proxy, pool, close: closeProxied } = await proxiedPool(ctx));
});

afterAll(async () => {
  await closeProxied?.();
});

beforeEach(async () => {
  proxy.unblock();
  await ctx.db.pool.query('TRUNCATE packages, analysis_queue CASCADE');
  for (let p = 0; p < PARTITIONS; p++) await ctx.redis.del(...Object.values(ctx.keys.partition(p)));
});

/** The real buffer, counting its reads (started and finished) and optionally failing one. */
class RecordingBuffer extends RedisBuffer {
  readsStarted = 0;
  readsDone = 0;
  failRead: number | null = null;
  override async read(
    partition: number,
    after: number | null,
    max: number,
    limit: number,
  ): Promise<BufferEntry[]> {
    const n = ++this.readsStarted;
    if (n === this.failRead) throw new Error(`read ${n} failed`);
    const entries = await super.read(partition, after, max, limit);
    this.readsDone++;
    return entries;
  }
}

/** The real store, whose writes run a hook first (to wait for, or cut, something mid-round). */
class HookedStore extends CountingStore {
  beforeInsert: (call: number) => Promise<void> = async () => undefined;
  override async flushRound(
    rows: readonly NewPackage[],
    reports: readonly ReportSet[],
    beforeCommit?: () => Promise<void>,
  ) {
    await this.beforeInsert(this.inserts + 1);
    return super.flushRound(rows, reports, beforeCommit);
  }
}

function prefetchFlusher() {
  const buffer = new RecordingBuffer(ctx.redis, ctx.keys, PARTITIONS, ctx.config.maxBufferDepth);
  const store = new HookedStore(pool);
  const t = testFlusher(ctx, { deps: { buffer, store, backoff: backoffWithoutWaits(ctx.config) } });
  return { ...t, buffer, store };
}

test('the next round is read from Redis while the current one is written to PostgreSQL; every round is still written', async () => {
  const t = prefetchFlusher();
  const keys = await bufferPackages(t.buffer, 500, 'overlap');
  // A multiple of BATCH: the last round is full too, so even its write overlaps a (empty) prefetch.
  const readsWhenWriting: number[] = [];
  // Round 1's write cannot start until round 2 is read: without the overlap this tick would hang.
  t.store.beforeInsert = async () => {
    const seen = t.buffer.readsDone;
    await waitFor(async () => t.buffer.readsDone > seen, { what: 'the next round read during this write' });
    readsWhenWriting.push(t.buffer.readsDone);
  };

  const r = await t.flusher.tick();
  expect(r.error).toBeNull();
  expect(r.rounds).toBe(5);
  expect(t.store.inserts).toBe(5);
  expect(r.partitions.reduce((a, p) => a + p.rows, 0)).toBe(500);
  const s = await state();
  expect(s.storedKeys).toEqual([...keys].sort());
  expect(s).toMatchObject({ pending: 0, dead: 0, queued: 500, queuedDistinct: 500, leases: 0 });
  // Each write waited for one more read to finish: the prefetch of the round after it.
  expect(readsWhenWriting.length).toBe(5);
  expect(readsWhenWriting[0]).toBeGreaterThanOrEqual(2);
}, 30_000);

test('PostgreSQL refuses round 2 while round 3 is prefetched: round 1 is confirmed, rounds 2 and 3 stay pending', async () => {
  const t = prefetchFlusher();
  await bufferPackages(t.buffer, 300, 'cut');
  t.store.beforeInsert = async (call) => {
    if (call !== 2) return;
    // The prefetch of round 3 is in hand before the connection is refused.
    await waitFor(async () => t.buffer.readsDone >= 3, { what: 'round 3 prefetched' });
    proxy.block();
  };

  const r = await t.flusher.tick();
  expect(r.error).not.toBeNull();
  expect(t.store.inserts).toBe(2);
  expect(await state()).toMatchObject({ pending: 200, dead: 0, queued: 100, leases: 0 });
  expect((await state()).storedKeys).toHaveLength(100);

  proxy.unblock();
  const ok = await t.flusher.tick();
  expect(ok).toMatchObject({ error: null, skipped: null });
  expect(await state()).toMatchObject({ pending: 0, dead: 0, queued: 300, queuedDistinct: 300, leases: 0 });
}, 30_000);

test('a prefetch that fails while the current round is written fails the tick (no unhandled rejection); the round in hand is still confirmed', async () => {
  const t = prefetchFlusher();
  await bufferPackages(t.buffer, 300, 'badread');
  t.buffer.failRead = 2;
  let writes = 0;
  t.store.beforeInsert = async () => {
    writes++;
    // The prefetch has already failed while this write is in flight.
    await waitFor(async () => t.buffer.readsStarted >= 2, { what: 'the prefetch to fail' });
    await new Promise((resolve) => setImmediate(resolve));
  };

  const r = await t.flusher.tick();
  expect(r.error).toBe('read 2 failed');
  expect(writes).toBe(1);
  expect(await state()).toMatchObject({ pending: 200, dead: 0, queued: 100, leases: 0 });
}, 30_000);
