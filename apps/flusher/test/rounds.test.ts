import { Pool } from 'pg';
import { RedisBuffer } from '@safepkg/core';
import { bufferPackages, flushState, pkg, useTestContext, waitFor } from '@safepkg/testkit';
import { backoffWithoutWaits, countStatements, counterValue, testFlusher } from './helpers';

const PARTITIONS = 16;
const BATCH = 1000;
const ctx = useTestContext({ bufferPartitions: PARTITIONS, flushBatchSize: BATCH, lockTtlMs: 30_000 });
const state = () => flushState(ctx.db.pool, ctx.redis, ctx.keys, PARTITIONS);

beforeEach(async () => {
  await ctx.db.pool.query('TRUNCATE packages, analysis_queue CASCADE');
  for (let p = 0; p < PARTITIONS; p++) await ctx.redis.del(...Object.values(ctx.keys.partition(p)));
});

async function depths(buffer: RedisBuffer, partitions: number): Promise<number[]> {
  const stats = await buffer.stats(Array.from({ length: partitions }, (_, p) => p));
  return stats.map((s) => s.depth);
}

test('one tick over 16 partitions writes ceil(total / FLUSH_BATCH_SIZE) transactions of 5 statements, not one per partition', async () => {
  const pool = new Pool({ connectionString: ctx.db.url, max: 2 });
  const statements = countStatements(pool);
  try {
    const t = testFlusher(ctx, { pool });
    const total = 2600;
    const keys = await bufferPackages(t.buffer, total, 'rounds');
    // The premise: every partition holds entries, so a per-partition flush would need ≥ 16 transactions.
    expect((await depths(t.buffer, PARTITIONS)).every((d) => d > 0)).toBe(true);

    const r = await t.flusher.tick();
    expect(r.error).toBeNull();
    expect(t.store.inserts).toBe(Math.ceil(total / BATCH));
    expect(r.rounds).toBe(3);
    expect(statements.count).toBe(3 * 5);
    expect(r.partitions.map((p) => p.partition)).toEqual(Array.from({ length: PARTITIONS }, (_, p) => p));
    expect(r.partitions.reduce((a, p) => a + p.rows, 0)).toBe(total);
    expect(r.partitions.reduce((a, p) => a + p.newRows, 0)).toBe(total);
    expect(await counterValue(t.metrics.rows)).toBe(total);
    expect(await counterValue(t.metrics.newRows)).toBe(total);

    const s = await state();
    expect(s.storedKeys).toEqual([...keys].sort());
    expect(s).toMatchObject({
      pending: 0,
      dead: 0,
      queued: total,
      queuedDistinct: total,
      queueOrphans: 0,
      leases: 0,
    });
  } finally {
    await pool.end();
  }
});

test('a poison row in a multi-partition round is dead-lettered in its own partition; the rest of the round is written', async () => {
  const t = testFlusher(ctx, { config: { flushBatchSize: 10_000 } });
  const good = await bufferPackages(t.buffer, 500, 'mixed');
  const poison = `9lives.poison:1:${pkg(1).signature}`;
  await t.buffer.add([{ key: poison, payload: { t: 1_700_000_000_000 } }]);

  const r = await t.flusher.tick();
  expect(r.error).toBeNull();
  expect(r.rounds).toBe(1);
  const s = await state();
  expect(s.storedKeys).toEqual([...good].sort());
  expect(s).toMatchObject({ pending: 0, dead: 1, queued: 500, queuedDistinct: 500 });
  const own = t.buffer.partitionOf(poison);
  expect(await t.buffer.deadLetters([own])).toMatchObject([
    { partition: own, key: poison, error: { code: '23514' } },
  ]);
  expect(r.partitions.find((p) => p.partition === own)?.deadLettered).toBe(1);
});

test('a lease lost while a round is in hand drops that partition before the write; the other partitions of the round are written', async () => {
  const victim = 3;
  const lock = ctx.keys.partition(victim).lock;
  const t = testFlusher(ctx, {
    // Short enough that the renewal timer (TTL/3) notices the theft soon, long enough that the
    // other partitions' leases survive a busy machine.
    config: { lockTtlMs: 3000 },
    deps: {
      checkpoint: async (point) => {
        if (point !== 'after-read') return;
        await ctx.redis.set(lock, 'another-flusher', 'PX', 30_000);
        await waitFor(async () => (await counterValue(t.metrics.leaseLosses)) === 1, {
          what: 'the timer to notice the loss',
        });
      },
    },
  });
  const keys = await bufferPackages(t.buffer, 400, 'dropped');
  const victimKeys = keys.filter((k) => t.buffer.partitionOf(k) === victim);
  expect(victimKeys.length).toBeGreaterThan(0);

  const r = await t.flusher.tick();
  expect(r.error).toMatch(/lease on partition 3 was lost/);
  expect(t.store.inserts).toBe(1);
  const s = await state();
  expect(s.storedKeys).toEqual(keys.filter((k) => !victimKeys.includes(k)).sort());
  expect(s).toMatchObject({ pending: victimKeys.length, queued: 400 - victimKeys.length });
  // The thief keeps its lease; every other lease was released.
  expect(await ctx.redis.get(lock)).toBe('another-flusher');
  expect(s.leases).toBe(1);
});

test('stray partitions (beyond BUFFER_PARTITIONS) are drained in the same rounds as the configured ones', async () => {
  // Buffered while 16 partitions were configured; the flusher now runs with 4.
  const t = testFlusher(ctx, { config: { bufferPartitions: 4 } });
  const wide = new RedisBuffer(ctx.redis, ctx.keys, PARTITIONS, ctx.config.maxBufferDepth);
  const keys = await bufferPackages(wide, 1500, 'stray');
  expect((await depths(wide, PARTITIONS)).slice(4).some((d) => d > 0)).toBe(true);

  const r = await t.flusher.tick();
  expect(r.error).toBeNull();
  expect(t.store.inserts).toBe(2);
  expect(r.partitions.some((p) => p.partition >= 4)).toBe(true);
  const s = await state();
  expect(s.storedKeys).toEqual([...keys].sort());
  expect(s).toMatchObject({ pending: 0, queued: 1500, queuedDistinct: 1500, leases: 0 });
});

/**
 * A checkpoint that holds round 1's confirm (two calls of 100) between its calls until
 * `release()`; `paused` resolves once it is held.
 */
function holdFirstConfirm() {
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  let reachedPause!: () => void;
  const paused = new Promise<void>((r) => (reachedPause = r));
  let atMidConfirm = 0;
  const checkpoint = async (point: string) => {
    if (point !== 'mid-confirm' || ++atMidConfirm !== 1) return;
    reachedPause();
    await held;
  };
  return { checkpoint, paused, release };
}

test("a round's confirm runs beside the next round's transaction, whose COMMIT waits for it", async () => {
  const { checkpoint, paused, release } = holdFirstConfirm();
  // A pool of its own, so the open flush transaction can be seen in pg_stat_activity.
  const pool = new Pool({ connectionString: ctx.db.url, max: 2, application_name: 'overlap-flusher' });
  try {
    const t = testFlusher(ctx, {
      pool,
      config: { bufferPartitions: 1, flushBatchSize: 200 },
      deps: { checkpoint },
    });
    const keys = await bufferPackages(t.buffer, 600, 'overlap');
    const tick = t.flusher.tick();
    await paused;
    // Round 2 has been read and its transaction runs (COPY, INSERT) while round 1's confirm is
    // held; it waits before its COMMIT, so only round 1's rows are visible.
    await waitFor(
      async () =>
        (
          await ctx.db.pool.query(
            "SELECT 1 FROM pg_stat_activity WHERE application_name = 'overlap-flusher' AND state = 'idle in transaction'",
          )
        ).rowCount === 1,
      { what: "round 2's transaction open before round 1's confirm is done" },
    );
    const mid = await state();
    expect(mid.storedKeys).toHaveLength(200);
    expect(mid.pending).toBe(600 - 100);
    release();
    const r = await tick;
    expect(r.error).toBeNull();
    expect(r.rounds).toBe(3);
    const s = await state();
    expect(s.storedKeys).toEqual([...keys].sort());
    expect(s).toMatchObject({ pending: 0, dead: 0, queued: 600, queuedDistinct: 600, leases: 0 });
  } finally {
    release();
    await pool.end();
  }
});

/** One partition, rounds of 200, retry ticks never skipped for backoff. */
function oneBatchFlusher() {
  return testFlusher(ctx, {
    config: { bufferPartitions: 1, flushBatchSize: 200 },
    deps: { backoff: backoffWithoutWaits(ctx.config) },
  });
}

/** Round 1's second confirm call fails, as a Redis error would; returns the undo. */
function failSecondConfirmCall(buffer: RedisBuffer): () => void {
  const confirm = buffer.confirm.bind(buffer);
  let calls = 0;
  buffer.confirm = async (...args: Parameters<typeof confirm>) => {
    if (++calls === 2) throw new Error('redis went away');
    return confirm(...args);
  };
  return () => {
    buffer.confirm = confirm;
  };
}

test('a failed confirm rolls the next round back: the tick fails with every uncommitted entry still pending', async () => {
  const t = oneBatchFlusher();
  const keys = await bufferPackages(t.buffer, 600, 'confirmfail');
  const restore = failSecondConfirmCall(t.buffer);
  const r = await t.flusher.tick();
  expect(r.error).toMatch(/redis went away/);
  const s = await state();
  // Round 1 committed; round 2 was rolled back at its COMMIT; nothing is lost, nothing doubled.
  expect(s.storedKeys).toHaveLength(200);
  expect(s.pending).toBe(600 - 100);
  restore();
  const again = await t.flusher.tick();
  expect(again.error).toBeNull();
  const end = await state();
  expect(end.storedKeys).toEqual([...keys].sort());
  expect(end).toMatchObject({ pending: 0, queued: 600, queuedDistinct: 600 });
});

describe('a round that commits nothing still waits for the previous confirm', () => {
  // Round 1: 200 packages; round 2: 200 malformed keys, all dead-lettered without a PostgreSQL
  // transaction (so no beforeCommit runs); round 3: 200 packages.
  async function bufferRounds(buffer: RedisBuffer, tag: string): Promise<string[]> {
    const first = await bufferPackages(buffer, 200, `${tag}a`);
    await buffer.add(
      Array.from({ length: 200 }, (_, i) => ({ key: `not a key ${tag} ${i}`, payload: { t: Date.now() } })),
    );
    const last = await bufferPackages(buffer, 200, `${tag}b`);
    return [...first, ...last];
  }

  test("round 1's failed confirm fails the tick; round 3 is not committed", async () => {
    const t = oneBatchFlusher();
    const keys = await bufferRounds(t.buffer, 'nocommitfail');
    const restore = failSecondConfirmCall(t.buffer);
    const r = await t.flusher.tick();
    expect(r.error).toMatch(/redis went away/);
    const s = await state();
    expect(s.storedKeys).toHaveLength(200);
    // Round 1's unconfirmed half and round 3 are still pending; round 2 is dead.
    expect(s).toMatchObject({ pending: 100 + 200, dead: 200 });
    restore();
    const again = await t.flusher.tick();
    expect(again.error).toBeNull();
    const end = await state();
    expect(end.storedKeys).toEqual([...keys].sort());
    expect(end).toMatchObject({ pending: 0, dead: 200, queued: 400, queuedDistinct: 400, leases: 0 });
  });

  test("round 3 does not commit while round 1's confirm is held", async () => {
    const { checkpoint, paused, release } = holdFirstConfirm();
    const t = testFlusher(ctx, {
      config: { bufferPartitions: 1, flushBatchSize: 200 },
      deps: { checkpoint },
    });
    const keys = await bufferRounds(t.buffer, 'nocommithold');
    const tick = t.flusher.tick();
    try {
      await paused;
      // Round 2 is dead-lettered meanwhile; give round 3 every chance to commit if it could.
      await waitFor(async () => (await state()).dead === 200, { what: 'round 2 dead-lettered' });
      await new Promise((r) => setTimeout(r, 300));
      expect((await state()).storedKeys).toHaveLength(200);
    } finally {
      release();
    }
    const r = await tick;
    expect(r.error).toBeNull();
    const s = await state();
    expect(s.storedKeys).toEqual([...keys].sort());
    expect(s).toMatchObject({ pending: 0, dead: 200, queued: 400, leases: 0 });
  });
});
