import {
  createLogger,
  EvaluationStore,
  packageKey,
  ResultCache,
  SignerStore,
  statusOf,
  type Config,
  type PackageRef,
} from '@safepkg/core';
import { pkg, pkgs, storedReports, useTestContext, waitFor } from '@safepkg/testkit';
import { Client } from 'pg';
import { RetentionSweeper, type RetentionSweeperDeps, type Sleep } from '../src/retention-sweeper';
import { counterValue, testFlusher } from './helpers';

const PARTITIONS = 4;
const DAY = 86_400_000;
const NOW = Date.UTC(2026, 0, 31);
const OLD = new Date(NOW - 40 * DAY);
const RECENT = new Date(NOW - 2 * DAY);
const ctx = useTestContext({ bufferPartitions: PARTITIONS, retentionDays: 30, retentionBatchSize: 1000 });

beforeEach(async () => {
  await ctx.db.pool.query(
    'TRUNCATE packages, analysis_queue, report_flushes, evaluations, signers, signer_evaluations CASCADE',
  );
  for (let p = 0; p < PARTITIONS; p++) await ctx.redis.del(...Object.values(ctx.keys.partition(p)));
  await ctx.redis.del(ctx.keys.retentionLock(), ctx.keys.retentionCursor());
});

function sweeperFor(config: Partial<Config> = {}, deps: Partial<RetentionSweeperDeps> = {}) {
  const t = testFlusher(ctx, { config });
  const sweeper = new RetentionSweeper({
    config: t.config,
    pool: ctx.db.pool,
    redis: ctx.redis,
    keys: ctx.keys,
    buffer: t.buffer,
    metrics: t.metrics,
    logger: createLogger({ logLevel: 'silent' }, 'retention-test'),
    ...deps,
  });
  return { ...t, sweeper };
}

/** Stores packages as a flush would (queued for analysis), first seen at `at`, last seen at `lastSeen`. */
async function store(refs: readonly PackageRef[], at: Date, lastSeen: Date | null = at) {
  const t = testFlusher(ctx);
  await t.store.insertBatch(refs.map((ref) => ({ ref, firstSeenAt: at })));
  await ctx.db.pool.query(
    `UPDATE packages SET last_seen_at = $1 WHERE name = ANY($2::text[]) AND signature = ANY($3::text[])`,
    [lastSeen?.toISOString() ?? null, refs.map((r) => r.name), refs.map((r) => r.signature)],
  );
}

async function storedKeys(): Promise<Set<string>> {
  const { rows } = await ctx.db.pool.query<{ name: string; version_code: string; signature: string }>(
    'SELECT name, version_code, signature FROM packages',
  );
  return new Set(
    rows.map((r) =>
      packageKey({ name: r.name, versionCode: Number(r.version_code), signature: r.signature }),
    ),
  );
}

async function queueRows(): Promise<number> {
  return Number((await ctx.db.pool.query('SELECT count(*) AS n FROM analysis_queue')).rows[0].n);
}

test('deletes old packages with no verdict and their queue rows and cache entries; keeps every other kind', async () => {
  const { sweeper, buffer, reports, metrics } = sweeperFor();
  const old = pkgs(0, 5, 'old');
  const neverReported = pkg(0, 'neverreported');
  const recentFirst = pkg(0, 'recentfirst');
  const recentLast = pkg(0, 'recentlast');
  const evaluated = pkg(0, 'evaluated');
  const pending = pkg(0, 'pending');
  const live = pkg(0, 'livedeltas');
  const inflight = pkg(0, 'inflightdeltas');
  await store([...old, evaluated, pending, live, inflight], OLD);
  await store([neverReported], OLD, null);
  await store([recentFirst], RECENT);
  await store([recentLast], OLD, RECENT);
  await new EvaluationStore(ctx.db.pool).record(
    [{ ...evaluated, verdict: 'safe', source: 'model', threatIndex: 0.1 }],
    'test',
  );
  // Buffered again (a check's lookup missed on a lagging replica), and reported by devices lately.
  await buffer.add([{ key: packageKey(pending), payload: { t: NOW } }]);
  await reports.add([packageKey(live)], NOW);
  await reports.add([packageKey(inflight)], NOW);
  const taken = await reports.take(0);
  const takenPartitions = taken ? [taken.partition] : [];
  for (let p = 1; p < PARTITIONS; p++) {
    const s = await reports.take(p);
    if (s) takenPartitions.push(p);
  }
  // `live` must stay live: count it again after the take.
  await reports.add([packageKey(live)], NOW);
  expect(takenPartitions.length).toBeGreaterThan(0);

  const cache = new ResultCache(ctx.redis, ctx.keys, 3600);
  const rows = await testFlusher(ctx).store.lookupMany([...old, recentFirst]);
  await cache.fill([...rows].map(([key, p]) => ({ key, status: statusOf(p) })));
  const queuedBefore = await queueRows();

  const r = await sweeper.sweep(NOW);
  expect(r).toMatchObject({ skipped: null, error: null, passComplete: true, deleted: 6 });
  expect(r.held).toBe(3);
  const left = await storedKeys();
  for (const ref of [...old, neverReported]) expect(left.has(packageKey(ref))).toBe(false);
  for (const ref of [recentFirst, recentLast, evaluated, pending, live, inflight])
    expect(left.has(packageKey(ref))).toBe(true);
  // The evaluation removed its queue row; the six swept took theirs.
  expect(await queueRows()).toBe(queuedBefore - 6);
  const cached = await cache.getMany([...old, recentFirst].map(packageKey));
  expect([...cached.keys()]).toEqual([packageKey(recentFirst)]);
  expect(await counterValue(metrics.retentionSwept)).toBe(6);
  expect(await counterValue(metrics.retentionHeld)).toBe(3);
  expect((await metrics.retentionLastSweep.get()).values[0]?.value).toBeGreaterThan(0);
  // Nothing left to delete: a second sweep deletes nothing.
  expect(await sweeper.sweep(NOW)).toMatchObject({ deleted: 0, error: null });
});

test('an old package whose signing certificate has a verdict is kept; one signed by a certificate without is swept', async () => {
  const { sweeper } = sweeperFor();
  const [signed, unsigned] = pkgs(0, 2, 'signerkept') as [PackageRef, PackageRef];
  await store([signed, unsigned], OLD);
  await new SignerStore(ctx.db.pool).record(
    [{ signature: signed.signature, verdict: 'malicious', source: 'manual', threatIndex: 0.9 }],
    'test',
  );
  expect(await sweeper.sweep(NOW)).toMatchObject({ deleted: 1, error: null });
  const left = await storedKeys();
  expect([left.has(packageKey(signed)), left.has(packageKey(unsigned))]).toEqual([true, false]);
});

test('a row an evaluation holds locked is skipped, not waited on, and kept once the evaluation commits', async () => {
  const { sweeper } = sweeperFor();
  const [held, free] = pkgs(0, 2, 'locked') as [PackageRef, PackageRef];
  await store([held, free], OLD);
  const evaluation = new Client({ connectionString: ctx.db.url });
  await evaluation.connect();
  try {
    await evaluation.query('BEGIN');
    // What EvaluationStore.record does before its INSERT: lock the package rows FOR UPDATE.
    const { rows } = await evaluation.query<{ id: string }>(
      'SELECT id FROM packages WHERE name = $1 AND signature = $2 FOR UPDATE',
      [held.name, held.signature],
    );
    await evaluation.query(
      `INSERT INTO evaluations (package_id, source, verdict, threat_index, created_by)
       VALUES ($1, 'manual', 'malicious', 1, 'test')`,
      [rows[0]?.id],
    );
    // The sweep returns while the lock is held (it would time out or hang otherwise).
    const r = await sweeper.sweep(NOW);
    expect(r).toMatchObject({ error: null, deleted: 1 });
    expect(await storedKeys()).toEqual(new Set([packageKey(held)]));
    await evaluation.query('COMMIT');
  } finally {
    await evaluation.end();
  }
  expect(await sweeper.sweep(NOW)).toMatchObject({ error: null, deleted: 0 });
  expect(await storedKeys()).toEqual(new Set([packageKey(held)]));
});

test('batches are bounded by RETENTION_BATCH_SIZE; the pass resumes from its cursor', async () => {
  const { sweeper } = sweeperFor({ retentionBatchSize: 10 });
  // 25 candidates, and 5 old but recently reported ones among them in index order.
  await store(pkgs(0, 25, 'batch'), OLD);
  await store(pkgs(0, 5, 'active'), new Date(OLD.getTime() + 1000), RECENT);
  const statements: number[] = [];
  const counting = sweeperFor(
    { retentionBatchSize: 10 },
    {
      afterHeldCheck: async (keys) => {
        statements.push(keys.length);
      },
    },
  );
  // Another flusher holds the sweep: this one skips.
  await ctx.redis.set(ctx.keys.retentionLock(), 'someone', 'PX', 60_000);
  expect(await sweeper.sweep(NOW)).toMatchObject({ skipped: 'busy', deleted: 0 });
  await ctx.redis.del(ctx.keys.retentionLock());

  const r = await counting.sweeper.sweep(NOW);
  // 30 index entries in batches of 10: 10, 10, 10, then an empty one that ends the pass.
  expect(r).toMatchObject({ error: null, deleted: 25, passComplete: true, batches: 4 });
  expect(Math.max(...statements)).toBeLessThanOrEqual(10);
  expect(await ctx.redis.exists(ctx.keys.retentionCursor())).toBe(0);
  expect((await storedKeys()).size).toBe(5);
});

test('a cursor left by a sweep cut short is resumed; a damaged one restarts the pass', async () => {
  const { sweeper } = sweeperFor({ retentionBatchSize: 10 });
  await store(pkgs(0, 20, 'resume'), OLD);
  const { rows } = await ctx.db.pool.query<{ id: string; t: string }>(
    'SELECT id, first_seen_at::text AS t FROM packages ORDER BY first_seen_at, id OFFSET 9 LIMIT 1',
  );
  await ctx.redis.set(
    ctx.keys.retentionCursor(),
    JSON.stringify({ firstSeenAt: rows[0]?.t, id: rows[0]?.id }),
  );
  expect(await sweeper.sweep(NOW)).toMatchObject({ error: null, deleted: 10, passComplete: true });
  expect((await storedKeys()).size).toBe(10);
  await ctx.redis.set(ctx.keys.retentionCursor(), 'not json');
  expect(await sweeper.sweep(NOW)).toMatchObject({ error: null, deleted: 10, passComplete: true });
});

test('reports accepted for an old package are never lost: held while pending, and a count that lands during the batch re-buffers it', async () => {
  const { sweeper, reports, flusher, metrics } = sweeperFor();
  const [counted, racing] = pkgs(0, 2, 'deltas') as [PackageRef, PackageRef];
  await store([counted, racing], OLD);
  // A check counted `counted` (its row was found): kept while the delta waits, then fresh.
  await reports.add([packageKey(counted)], NOW);
  expect(await sweeper.sweep(NOW)).toMatchObject({ deleted: 1, held: 1 });
  // `racing` was deleted; now `counted` gets its delta flushed and stays.
  await ctx.db.pool.query('TRUNCATE packages, analysis_queue, report_flushes CASCADE');
  await store([counted, racing], OLD);

  // A check that read `racing` before the batch's COMMIT counts it after the batch's Redis question.
  const racy = sweeperFor(
    {},
    {
      afterHeldCheck: async (keys) => {
        if (keys.includes(packageKey(racing))) await reports.add([packageKey(racing)], NOW);
      },
    },
  );
  const r = await racy.sweeper.sweep(NOW);
  expect(r).toMatchObject({ error: null, rebuffered: 1 });
  expect(await counterValue(racy.metrics.retentionRebuffered)).toBe(1);
  // The next flush inserts it again (first seen now) and applies its delta: the report counted.
  const tick = await flusher.tick();
  expect(tick.error).toBeNull();
  const stored = await storedReports(ctx.db.pool);
  expect(stored.get(packageKey(racing))).toEqual({ reports: 1, lastSeenAt: NOW });
  expect(stored.get(packageKey(counted))).toEqual({ reports: 1, lastSeenAt: NOW });
  expect(await counterValue(metrics.reportsUnmatched)).toBe(0);
  // Both are fresh now: nothing to sweep.
  expect(await sweeper.sweep(NOW)).toMatchObject({ deleted: 0 });
});

test('unset RETENTION_DAYS sweeps nothing', async () => {
  const { sweeper } = sweeperFor({ retentionDays: null });
  await store(pkgs(0, 3, 'keep'), OLD);
  expect(await sweeper.sweep(NOW)).toMatchObject({ skipped: 'disabled', deleted: 0 });
  expect((await storedKeys()).size).toBe(3);
});

test('a batch that meets a lock it must wait for times out and rolls back whole; the next sweep resumes', async () => {
  const { sweeper, metrics } = sweeperFor({ retentionLockTimeoutMs: 50 });
  await store(pkgs(0, 3, 'timeout'), OLD);
  const blocker = new Client({ connectionString: ctx.db.url });
  await blocker.connect();
  try {
    await blocker.query('BEGIN');
    // A claim-like lock on the queue rows: the batch's DELETE of them would have to wait.
    await blocker.query('SELECT * FROM analysis_queue FOR UPDATE');
    const r = await sweeper.sweep(NOW);
    expect(r.error).not.toBeNull();
    expect(await counterValue(metrics.retentionFailures, { reason: 'timeout' })).toBe(1);
    expect((await storedKeys()).size).toBe(3);
    await blocker.query('ROLLBACK');
  } finally {
    await blocker.end();
  }
  expect(await sweeper.sweep(NOW)).toMatchObject({ error: null, deleted: 3 });
  expect(await queueRows()).toBe(0);
});

describe('RETENTION_BATCH_PAUSE_MS', () => {
  /**
   * The order of batches and pauses, seen through the hooks rather than a clock: each batch
   * logs when it asks Redis, each pause step logs its length, whether a PostgreSQL client is
   * checked out of the pool, and whether the lease is still this sweep's.
   */
  function recording(config: Partial<Config>) {
    const events: string[] = [];
    let leaseToken: string | null = null;
    const sleep: Sleep = async (ms) => {
      const checkedOut = ctx.db.pool.totalCount - ctx.db.pool.idleCount;
      const token = await ctx.redis.get(ctx.keys.retentionLock());
      leaseToken ??= token;
      events.push(`pause ${ms} clients=${checkedOut} lease=${token !== null && token === leaseToken}`);
    };
    const t = sweeperFor(config, {
      sleep,
      afterHeldCheck: async () => {
        events.push('batch');
      },
    });
    return { ...t, events };
  }

  test('pauses between two batches, not after the last; no PostgreSQL client is held and the lease stays ours', async () => {
    await store(pkgs(0, 25, 'paced'), OLD);
    const { sweeper, events } = recording({ retentionBatchSize: 10, retentionBatchPauseMs: 250 });
    const r = await sweeper.sweep(NOW);
    // 25 entries in batches of 10: 10, 10, 5 (short: the pass ends).
    expect(r).toMatchObject({ error: null, deleted: 25, batches: 3, pauses: 2, passComplete: true });
    const pause = 'pause 250 clients=0 lease=true';
    expect(events).toEqual(['batch', pause, 'batch', pause, 'batch']);
  });

  test('a pause longer than a third of LOCK_TTL_MS is split, the lease renewed after each step', async () => {
    await store(pkgs(0, 15, 'longpause'), OLD);
    const { sweeper, events } = recording({
      retentionBatchSize: 10,
      retentionBatchPauseMs: 800,
      lockTtlMs: 1000,
    });
    expect(await sweeper.sweep(NOW)).toMatchObject({ error: null, deleted: 15, batches: 2, pauses: 1 });
    const step = (ms: number) => `pause ${ms} clients=0 lease=true`;
    expect(events).toEqual(['batch', step(333), step(333), step(134), 'batch']);
  });

  test('0 runs the batches back to back', async () => {
    await store(pkgs(0, 25, 'nopause'), OLD);
    const { sweeper, events } = recording({ retentionBatchSize: 10, retentionBatchPauseMs: 0 });
    expect(await sweeper.sweep(NOW)).toMatchObject({ error: null, deleted: 25, batches: 3, pauses: 0 });
    expect(events).toEqual(['batch', 'batch', 'batch']);
  });

  test('the lease survives a real pause of more than LOCK_TTL_MS (renewed during it)', async () => {
    // Real time: without the renewals the 1 s lease would expire during the 1.5 s pauses, the
    // renewal after the second batch would fail and the sweep stop there, lease lost (and
    // meanwhile another flusher could have taken the sweep).
    await store(pkgs(0, 25, 'realpause'), OLD);
    const { sweeper } = sweeperFor({
      retentionBatchSize: 10,
      retentionBatchPauseMs: 1500,
      lockTtlMs: 1000,
    });
    const r = await sweeper.sweep(NOW);
    expect(r).toMatchObject({ error: null, deleted: 25, batches: 3, pauses: 2, passComplete: true });
    expect(await ctx.redis.exists(ctx.keys.retentionLock())).toBe(0);
  });

  test('stop() during a pause ends it at once: no further batch, the lease released, the pass resumable', async () => {
    await store(pkgs(0, 25, 'stoppause'), OLD);
    // Ten minutes, the longest allowed: were stop() to wait for the pause, the test would time out.
    const { sweeper } = sweeperFor({ retentionBatchSize: 10, retentionBatchPauseMs: 600_000 });
    const sweep = sweeper.sweep(NOW);
    // The cursor is written after the first batch's COMMIT, right before its pause.
    await waitFor(() => ctx.redis.exists(ctx.keys.retentionCursor()), { what: 'the first batch' });
    await sweeper.stop();
    const r = await sweep;
    expect(r).toMatchObject({ error: null, deleted: 10, batches: 1, pauses: 1, passComplete: false });
    expect((await storedKeys()).size).toBe(15);
    expect(await ctx.redis.exists(ctx.keys.retentionLock())).toBe(0);
    // A stopped sweeper starts no new sweep; the next one (another process) resumes from the cursor.
    expect(await sweeper.sweep(NOW)).toMatchObject({ skipped: 'stopping' });
    const next = sweeperFor({ retentionBatchSize: 10, retentionBatchPauseMs: 0 }).sweeper;
    expect(await next.sweep(NOW)).toMatchObject({ error: null, deleted: 15, batches: 2, passComplete: true });
  });
});
