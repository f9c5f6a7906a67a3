import {
  EvaluationStore,
  packageKey,
  PackageStore,
  ReportBuffer,
  SignerStore,
  type PackageRef,
} from '@safepkg/core';
import { pkgs, storedReports, useTestContext, waitFor } from '@safepkg/testkit';
import { freshCase, startFlusherProcess } from './flusher-helpers';

// A short lease, so that the one a killed sweeper leaves expires soon (LOCK_TTL_MS min is 1 s).
const ctx = useTestContext({ bufferPartitions: 2, flushIntervalMs: 100, lockTtlMs: 1000 });

const DAY = 86_400_000;
const BATCH = 25;
const RETENTION_ENV = {
  RETENTION_DAYS: '7',
  RETENTION_SWEEP_INTERVAL_MS: '1000',
  RETENTION_BATCH_SIZE: String(BATCH),
  // A pause of its own (not the 200 ms default) so that the pass of ~10 batches stays short.
  RETENTION_BATCH_PAUSE_MS: '20',
};

/** What must be kept, interleaved in index order with what may go (first seen 10 days ago, 1 ms apart). */
const KINDS = ['sweepable', 'sweepable', 'evaluated', 'sweepable', 'pending', 'deltas', 'signer'] as const;
type Kind = (typeof KINDS)[number];
const PER_KIND = 40;

interface IndexEntry {
  key: string;
  id: string;
  /** first_seen_at as PostgreSQL prints it, as the sweep's cursor keeps it. */
  t: string;
}

interface Seeded {
  byKind: Map<Kind, PackageRef[]>;
  /** The old entries of the index packages_retention (no verdict), in its order (first_seen_at, id). */
  index: IndexEntry[];
}

async function seed(c: Awaited<ReturnType<typeof freshCase>>): Promise<Seeded> {
  await ctx.db.pool.query(
    'TRUNCATE packages, analysis_queue, report_flushes, evaluations, signers, signer_evaluations CASCADE',
  );
  const byKind = new Map<Kind, PackageRef[]>();
  const rows: { ref: PackageRef; firstSeenAt: Date }[] = [];
  const base = Date.now() - 10 * DAY;
  let i = 0;
  for (let n = 0; n < PER_KIND; n++) {
    for (const [j, kind] of KINDS.entries()) {
      const ref = pkgs(n, 1, `rf${kind}${j}`)[0] as PackageRef;
      byKind.set(kind, [...(byKind.get(kind) ?? []), ref]);
      rows.push({ ref, firstSeenAt: new Date(base + i++) });
    }
  }
  // Stored as a flush stores them: each queued for analysis.
  await new PackageStore(ctx.db.pool).insertBatch(rows);
  await ctx.db.pool.query('UPDATE packages SET last_seen_at = first_seen_at');
  const of = (kind: Kind) => byKind.get(kind) as PackageRef[];
  await new EvaluationStore(ctx.db.pool).record(
    of('evaluated').map((ref) => ({
      ...ref,
      verdict: 'safe' as const,
      source: 'model' as const,
      threatIndex: 0.1,
    })),
    'test',
  );
  await new SignerStore(ctx.db.pool).record(
    of('signer').map((ref) => ({
      signature: ref.signature,
      verdict: 'malicious' as const,
      source: 'manual' as const,
      threatIndex: 0.9,
    })),
    'test',
  );
  // Buffered again (a check missed them on a lagging replica), and reported by devices just now.
  await c.buffer.add(of('pending').map((ref) => ({ key: packageKey(ref), payload: { t: Date.now() } })));
  await new ReportBuffer(ctx.redis, c.keys, c.config.bufferPartitions).add(
    of('deltas').map(packageKey),
    Date.now(),
  );
  // Another flusher holds every partition's flush lease: the pending entries and deltas stay in
  // Redis for the whole sweep, so the sweep must keep them because Redis holds them (not because
  // a flush made them recent first).
  for (let p = 0; p < c.config.bufferPartitions; p++)
    await ctx.redis.set(c.keys.partition(p).lock, 'another-flusher', 'PX', 600_000);
  const { rows: order } = await ctx.db.pool.query<{
    name: string;
    version_code: string;
    signature: string;
    id: string;
    t: string;
  }>(
    `SELECT name, version_code, signature, id, first_seen_at::text AS t FROM packages
      WHERE verdict IS NULL AND first_seen_at < now() - interval '7 days' ORDER BY first_seen_at, id`,
  );
  const index = order.map((r) => ({
    key: packageKey({ name: r.name, versionCode: Number(r.version_code), signature: r.signature }),
    id: r.id,
    t: r.t,
  }));
  return { byKind, index };
}

async function stored(): Promise<Set<string>> {
  return new Set((await storedReports(ctx.db.pool)).keys());
}

/** Queue rows: how many, and how many belong to no package (the sweep deletes a package's with it). */
async function queue(): Promise<{ rows: number; orphans: number }> {
  const { rows } = await ctx.db.pool.query<{ rows: string; orphans: string }>(
    `SELECT count(*) AS rows,
            count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM packages p WHERE p.id = q.package_id)) AS orphans
       FROM analysis_queue q`,
  );
  return { rows: Number(rows[0]?.rows), orphans: Number(rows[0]?.orphans) };
}

/** The "retention sweep" log lines of a flusher's output. */
function loggedSweeps(output: string): { batches: number; deleted: number; passComplete: boolean }[] {
  return output
    .split('\n')
    .filter((line) => line.includes('"retention sweep"'))
    .map((line) => {
      const { batches, deleted, passComplete } = JSON.parse(line) as {
        batches: number;
        deleted: number;
        passComplete: boolean;
      };
      return { batches, deleted, passComplete };
    });
}

/**
 * The 3rd batch that deletes something is the crash point's 3rd hit. Every batch of 25 index
 * entries here holds sweepable rows, so that is the 3rd batch: batches 1–2 are committed and
 * the cursor stands after entry 50. Killed before the COMMIT, batch 3 rolls back; killed after
 * it, batch 3 stays deleted although the cursor was not advanced past it.
 */
const cases = [
  { point: 'retention-before-commit:3', name: 'rbc', committedEntries: 2 * BATCH },
  { point: 'retention-batch-deleted:3', name: 'rbd', committedEntries: 3 * BATCH },
] as const;

test.each(cases)(
  'flusher killed (-9) mid-sweep at $point: the next sweep resumes and finishes; nothing that must be kept is deleted',
  async ({ point, name, committedEntries }) => {
    // A short sub-prefix of its own (KEY_PREFIX is at most 32 characters).
    const c = await freshCase(ctx, name);
    const { byKind, index } = await seed(c);
    const all = [...byKind.values()].flat().map(packageKey);
    const sweepable = new Set((byKind.get('sweepable') as PackageRef[]).map(packageKey));
    const kept = all.filter((k) => !sweepable.has(k));
    const sweepableIn = (entries: readonly IndexEntry[]) =>
      entries.filter((e) => sweepable.has(e.key)).map((e) => e.key);
    // More than three batches' worth of index entries, so the kill lands before the pass's end.
    expect(index.length).toBeGreaterThan(4 * BATCH);
    const queuedBefore = await queue();
    expect(queuedBefore.orphans).toBe(0);

    const crashing = await startFlusherProcess(c.config, { ...RETENTION_ENV, SAFEPKG_TEST_CRASH_AT: point });
    const exit = await crashing.exited;
    // Its output only if it did not die at the crash point (a misspelt point exits 1, for example).
    expect({ exit, output: exit.signal === 'SIGKILL' ? '' : crashing.output() }).toEqual({
      exit: { code: null, signal: 'SIGKILL' },
      output: '',
    });

    // Exactly the committed batches' sweepable rows are gone, with their queue rows.
    const goneAtKill = sweepableIn(index.slice(0, committedEntries));
    expect(goneAtKill.length).toBeGreaterThan(0);
    expect(goneAtKill.length).toBeLessThan(sweepable.size);
    const afterKill = await stored();
    expect(all.filter((k) => !afterKill.has(k)).sort()).toEqual([...goneAtKill].sort());
    expect(await queue()).toEqual({ rows: queuedBefore.rows - goneAtKill.length, orphans: 0 });
    // The dead sweeper's lease is still there, with a TTL: it lapses by itself within LOCK_TTL_MS.
    const ttl = await ctx.redis.pttl(c.keys.retentionLock());
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(c.config.lockTtlMs);
    // The cursor stands after batch 2 in both cases (batch 3 never wrote its own).
    const cursorAt = index[2 * BATCH - 1] as IndexEntry;
    expect(JSON.parse((await ctx.redis.get(c.keys.retentionCursor())) ?? 'null')).toEqual({
      firstSeenAt: cursorAt.t,
      id: cursorAt.id,
    });

    const normal = await startFlusherProcess(c.config, RETENTION_ENV);
    try {
      await waitFor(
        async () => {
          const s = await stored();
          return [...sweepable].every((k) => !s.has(k));
        },
        { what: 'the resumed sweep to delete every sweepable row', timeoutMs: 30_000 },
      );
      const s = await stored();
      expect(kept.filter((k) => !s.has(k))).toEqual([]);
      expect(s.size).toBe(kept.length);
      expect(await queue()).toEqual({ rows: queuedBefore.rows - sweepable.size, orphans: 0 });
      // The first sweep that deleted anything resumed from the cursor and finished the pass from
      // there: it read only the entries after the cursor still in the index (batch 3's deleted
      // ones are gone if it committed), 25 a batch, the last one short or empty.
      await waitFor(() => loggedSweeps(normal.output()).some((l) => l.deleted > 0), {
        what: 'the sweep log',
      });
      const resumed = loggedSweeps(normal.output()).find((l) => l.deleted > 0);
      const afterCursor = index.slice(2 * BATCH).filter((e) => afterKill.has(e.key)).length;
      expect(resumed).toEqual({
        passComplete: true,
        deleted: sweepable.size - goneAtKill.length,
        batches: Math.floor(afterCursor / BATCH) + 1,
      });

      // The other flusher lets go: the buffered entries and the deltas are flushed onto their rows.
      for (let p = 0; p < c.config.bufferPartitions; p++) await ctx.redis.del(c.keys.partition(p).lock);
      await waitFor(
        async () => {
          const st = await c.state();
          return st.pending === 0 && st.reportKeys === 0;
        },
        { what: 'the flush of the held entries and deltas', timeoutMs: 30_000 },
      );
      const reports = await storedReports(ctx.db.pool);
      for (const ref of byKind.get('deltas') as PackageRef[])
        expect([packageKey(ref), reports.get(packageKey(ref))?.reports]).toEqual([packageKey(ref), 1]);
    } finally {
      expect(await normal.kill('SIGTERM')).toMatchObject({ code: 0 });
    }
    // No lease left behind: the stopped sweeper released its own, the dead one's lapsed.
    expect(await ctx.redis.exists(c.keys.retentionLock())).toBe(0);
  },
);
