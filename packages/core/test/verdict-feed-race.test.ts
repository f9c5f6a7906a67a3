import { Client } from 'pg';
import {
  createPool,
  decodeFeedCursor,
  EvaluationStore,
  VerdictFeed,
  type PackageRef,
  type VerdictChange,
} from '@safepkg/core';
import { pkgs, startPgbouncer, useTestContext } from '@safepkg/testkit';

/**
 * Races writers against a follower of the verdict change feed. The follower pages with small
 * limits the whole time; writers commit concurrently, each on its own connection: direct feed
 * inserts held open for random lengths, evaluation batches over overlapping packages (the
 * trigger path), rollbacks, and a scripted step in every round where a transaction holds its
 * change rows open while a later one commits and the follower reads in between — the exact
 * interleaving an id or timestamp cursor alone gets wrong.
 */
const ctx = useTestContext();

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const hex = (tag: number) => tag.toString(16).padStart(64, '0');
const identity = (c: VerdictChange) =>
  [
    c.kind,
    c.name,
    c.versionCode,
    c.signature,
    c.status,
    c.source,
    c.threatIndex,
    c.changedAt.toISOString(),
  ].join('|');

interface Txn {
  signatures: string[];
  commitSentAt: number;
  committedAt: number;
}

async function connect(): Promise<Client> {
  const c = new Client({ connectionString: ctx.db.url });
  await c.connect();
  return c;
}

/** Inserts a signer change per signature, in one statement. */
const insertSigners = (c: Client, signatures: string[]) =>
  c.query(
    `INSERT INTO verdict_changes (kind, signature, status, source, basis, threat_index)
     SELECT 'signer', s, 'malicious', 'manual', 'signer', 1 FROM unnest($1::text[]) s`,
    [signatures],
  );

/** Resolves once `pid` waits on a lock, or once `done` settles (it did not have to wait). */
async function blockedOrDone(pid: number, done: Promise<unknown>, watcher: Client): Promise<void> {
  let settled = false;
  void done.then(
    () => (settled = true),
    () => (settled = true),
  );
  while (!settled) {
    const { rows } = await watcher.query<{ waiting: boolean }>(
      `SELECT wait_event_type = 'Lock' AS waiting FROM pg_stat_activity WHERE pid = $1`,
      [pid],
    );
    if (rows[0]?.waiting) return;
    await sleep(2);
  }
}

async function race(
  rounds: number,
): Promise<{ seen: VerdictChange[]; committed: VerdictChange[]; txns: Txn[] }> {
  const feed = new VerdictFeed(ctx.db.pool);
  const evaluations = new EvaluationStore(ctx.db.pool);
  const refs = pkgs(0, 30, 'feedrace');
  const txns: Txn[] = [];
  let tag = 1;
  let writing = true;

  const seen: VerdictChange[] = [];
  let cursor: bigint | null = null;
  // One follower: the background loop and the scripted step's reads take turns on its cursor.
  let turn: Promise<unknown> = Promise.resolve();
  const readPage = (limit: number): Promise<number> => {
    const read = turn.then(async () => {
      const page = await feed.read(cursor, limit);
      seen.push(...page.changes);
      cursor = decodeFeedCursor(page.next);
      return page.changes.length;
    });
    turn = read.catch(() => undefined);
    return read;
  };
  const drain = async () => {
    while ((await readPage(10)) === 10);
  };

  // The follower: small pages, never stopping while anyone writes.
  const follower = (async () => {
    while (writing) {
      await readPage(1 + (seen.length % 3));
      await sleep(Math.random() * 3);
    }
  })();

  // Direct writers: one to three statements, held open a random while, one in eight rolled back.
  const direct = async (id: number) => {
    const c = await connect();
    try {
      while (writing) {
        const signatures: string[] = [];
        await c.query('BEGIN');
        for (let s = 0; s < 1 + (id % 3); s++) {
          const batch = [hex(tag++), hex(tag++)];
          await insertSigners(c, batch);
          signatures.push(...batch);
          await sleep(Math.random() * 4);
        }
        if (Math.random() < 0.125) {
          await c.query('ROLLBACK');
          continue;
        }
        const commitSentAt = performance.now();
        await c.query('COMMIT');
        txns.push({ signatures, commitSentAt, committedAt: performance.now() });
        await sleep(Math.random() * 4);
      }
    } finally {
      await c.end();
    }
  };

  // Evaluation writers: overlapping packages in different orders, verdicts that flip each time.
  const evaluating = async (id: number) => {
    let n = id;
    while (writing) {
      const batch = refs.filter((_, i) => (i + n) % (2 + id) === 0);
      const verdict = n++ % 2 === 0 ? 'malicious' : 'suspicious';
      await evaluations.record(
        batch.map((r: PackageRef) => ({ ...r, verdict, source: 'model', threatIndex: (n % 10) / 10 })),
        `writer${id}`,
      );
    }
  };

  // The scripted interleaving, `rounds` times: `held` has its rows in and stays open; `later`
  // starts after it and tries to commit; the follower reads; only then does `held` commit.
  const scripted = async () => {
    const [held, later, watcher] = await Promise.all([connect(), connect(), connect()]);
    const laterPid =
      (await later.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid ?? -1;
    try {
      for (let r = 0; r < rounds; r++) {
        const heldSignatures = [hex(tag++), hex(tag++), hex(tag++)];
        const laterSignatures = [hex(tag++)];
        await held.query('BEGIN');
        await insertSigners(held, heldSignatures);
        await later.query('BEGIN');
        let laterSentAt = 0;
        const laterDone = insertSigners(later, laterSignatures).then(async () => {
          laterSentAt = performance.now();
          await later.query('COMMIT');
          txns.push({
            signatures: laterSignatures,
            commitSentAt: laterSentAt,
            committedAt: performance.now(),
          });
        });
        await blockedOrDone(laterPid, laterDone, watcher);
        await drain();
        const heldSentAt = performance.now();
        await held.query('COMMIT');
        txns.push({ signatures: heldSignatures, commitSentAt: heldSentAt, committedAt: performance.now() });
        await laterDone;
        await sleep(5);
      }
    } finally {
      await Promise.all([held.end(), later.end(), watcher.end()]);
    }
  };

  const writers = [direct(0), direct(1), direct(2), evaluating(0), evaluating(1)];
  await scripted();
  writing = false;
  await Promise.all([...writers, follower]);
  await drain();
  const committed: VerdictChange[] = [];
  for (let after: bigint | null = null; ;) {
    const page = await feed.read(after, 1000);
    committed.push(...page.changes);
    after = decodeFeedCursor(page.next);
    if (page.changes.length < 1000) break;
  }
  return { seen, committed, txns };
}

test('a follower paging while writers commit out of order sees every change once, in commit order', async () => {
  const { seen, committed, txns } = await race(12);
  // Exactly once: the follower's sequence is the committed feed, nothing missing, nothing twice.
  expect(seen.map(identity)).toEqual(committed.map(identity));
  // Something was actually raced: many transactions of both kinds.
  expect(txns.length).toBeGreaterThan(20);
  expect(committed.some((c) => c.kind === 'package')).toBe(true);

  // Commit order: a transaction whose COMMIT returned before another's COMMIT was sent has all
  // its rows before every row of the other.
  const position = new Map(seen.map((c, i) => [c.signature, i]));
  let pairs = 0;
  for (const a of txns)
    for (const b of txns) {
      if (a.committedAt >= b.commitSentAt) continue;
      pairs++;
      const lastOfA = Math.max(...a.signatures.map((s) => position.get(s) ?? Infinity));
      const firstOfB = Math.min(...b.signatures.map((s) => position.get(s) ?? -Infinity));
      expect([lastOfA < firstOfB, a.signatures, b.signatures]).toEqual([true, a.signatures, b.signatures]);
    }
  expect(pairs).toBeGreaterThan(0);
  // Each transaction's rows are contiguous: ids are drawn under a lock held to its commit.
  for (const t of txns) {
    const at = t.signatures.map((s) => position.get(s) ?? -1).sort((x, y) => x - y);
    expect(at[at.length - 1]! - at[0]!).toBe(at.length - 1);
  }
}, 120_000);

test('control: without the commit-order lock the same race makes the follower miss changes', async () => {
  const original = (
    await ctx.db.pool.query<{ def: string }>(
      `SELECT pg_get_functiondef('verdict_changes_order'::regproc) AS def`,
    )
  ).rows[0]?.def as string;
  // What a plain sequence gives: ids in insertion order, not commit order.
  await ctx.db.pool
    .query(`CREATE OR REPLACE FUNCTION verdict_changes_order() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN NEW.id := nextval('verdict_changes_id_seq'); NEW.changed_at := clock_timestamp(); RETURN NEW; END $$`);
  try {
    const { seen, committed } = await race(3);
    const seenIds = new Set(seen.map(identity));
    const missed = committed.filter((c) => !seenIds.has(identity(c)));
    // Every scripted round's held rows at least: the follower had read past their ids before they committed.
    expect(missed.length).toBeGreaterThanOrEqual(3 * 3);
  } finally {
    await ctx.db.pool.query(original);
  }
}, 120_000);

test('through pgbouncer in transaction mode (2 server connections), writers and a follower still agree exactly', async () => {
  const bouncer = await startPgbouncer(
    [{ alias: 'feed', port: Number(new URL(ctx.db.url).port || 5432), dbname: ctx.db.name }],
    {
      poolSize: 2,
    },
  );
  // As the apps build it behind a pooler: unnamed statements only.
  const pool = createPool(
    { ...ctx.config, pgPooler: 'transaction', databaseUrl: bouncer.url('feed') },
    'feed-test',
    8,
  );
  try {
    const feed = new VerdictFeed(pool);
    const store = new EvaluationStore(pool);
    const refs = pkgs(0, 12, 'feedbouncer');
    const seen: VerdictChange[] = [];
    await ctx.db.pool.query('TRUNCATE verdict_changes');
    let cursor: bigint | null = null;
    let writing = true;
    const follower = (async () => {
      for (;;) {
        const done = !writing;
        const page = await feed.read(cursor, 2);
        seen.push(...page.changes);
        cursor = decodeFeedCursor(page.next);
        if (done && page.changes.length < 2) return;
      }
    })();
    await Promise.all(
      [0, 1, 2, 3].map(async (w) => {
        for (let n = 0; n < 10; n++)
          await store.record(
            refs
              .filter((_, i) => (i + n + w) % 3 === 0)
              .map((r) => ({
                ...r,
                verdict: (n + w) % 2 ? 'malicious' : 'safe',
                source: 'model',
                threatIndex: n / 10,
              })),
            `writer${w}`,
          );
      }),
    );
    writing = false;
    await follower;
    const all = await new VerdictFeed(ctx.db.pool).read(null, 1000);
    expect(all.changes.length).toBeGreaterThan(10);
    expect(seen.map(identity)).toEqual(all.changes.map(identity));
  } finally {
    await pool.end();
    await bouncer.remove();
  }
}, 120_000);
