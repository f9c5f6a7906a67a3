import { Pool, type PoolClient } from 'pg';
import { PackageStore, packageKey, type NewPackage, type PackageRef } from '@safepkg/core';
import { pkgs, useTestContext, waitFor } from '@safepkg/testkit';

const ctx = useTestContext();

/** The statements a pool's connections send, as PostgreSQL receives them (COPY included). */
interface StatementLog {
  texts: string[];
  reset(): void;
}

/** A pool on the test database whose every statement is logged, client-side, by wrapping query. */
function loggedPool(log: StatementLog, applicationName = 'store-test'): Pool {
  const pool = new Pool({ connectionString: ctx.db.url, max: 4, application_name: applicationName });
  pool.on('connect', (client: PoolClient) => {
    const query = client.query.bind(client) as (...args: unknown[]) => unknown;
    const logged = (...args: unknown[]) => {
      const first = args[0] as string | { text?: string; cursor?: unknown } | undefined;
      log.texts.push(typeof first === 'string' ? first : (first?.text ?? 'COPY'));
      return query(...args);
    };
    client.query = logged as PoolClient['query'];
  });
  return pool;
}

function newLog(): StatementLog {
  const log: StatementLog = {
    texts: [],
    reset() {
      log.texts.length = 0;
    },
  };
  return log;
}

const BASE = Date.UTC(2025, 0, 1);
const rowsOf = (refs: PackageRef[], offsetMs = 0): NewPackage[] =>
  refs.map((ref, i) => ({ ref, firstSeenAt: new Date(BASE + offsetMs + i * 1000) }));
const keysOf = (refs: PackageRef[]) => refs.map((r) => packageKey(r)).sort();

async function count(sql: string, values: unknown[] = []): Promise<number> {
  const { rows } = await ctx.db.pool.query<{ n: string }>(sql, values);
  return Number(rows[0]?.n);
}

const log = newLog();
let pool: Pool;
let store: PackageStore;
beforeAll(() => {
  pool = loggedPool(log);
  store = new PackageStore(pool);
});

// One outer block so that its afterAll closes the pool before the file's database is dropped.
describe('PackageStore', () => {
  afterAll(async () => {
    // end() resolves before the sockets close; the file's DROP … WITH (FORCE) may then cut one.
    pool.on('error', () => undefined);
    await pool.end();
  });

  describe('insertBatch (the flush write)', () => {
    const all = pkgs(0, 40_000, 'batch');
    // Every other package is already stored: the batch is half old, half new, interleaved.
    const present = all.filter((_, i) => i % 2 === 0);
    const fresh = all.filter((_, i) => i % 2 === 1);

    test('40,000 rows with half already present: exactly the new half is returned and queued', async () => {
      const before = await store.insertBatch(rowsOf(present));
      expect(keysOf(before)).toEqual(keysOf(present));
      const queuedBefore = await count('SELECT count(*) AS n FROM analysis_queue');
      expect(queuedBefore).toBe(20_000);

      const inserted = await store.insertBatch(rowsOf(all, 1_000_000_000));
      expect(inserted).toHaveLength(20_000);
      expect(keysOf(inserted)).toEqual(keysOf(fresh));

      // analysis_queue gained exactly the new ones, each once.
      expect(await count('SELECT count(*) AS n FROM analysis_queue')).toBe(40_000);
      expect(
        await count(
          `SELECT count(*) AS n FROM analysis_queue q JOIN packages p ON p.id = q.package_id
            WHERE p.name = ANY($1::text[])`,
          [fresh.map((r) => r.name)],
        ),
      ).toBe(20_000);
      expect(await count('SELECT count(*) AS n FROM packages')).toBe(40_000);
    });

    test('re-running the same batch inserts and queues nothing', async () => {
      expect(await store.insertBatch(rowsOf(all, 2_000_000_000))).toEqual([]);
      expect(await count('SELECT count(*) AS n FROM packages')).toBe(40_000);
      expect(await count('SELECT count(*) AS n FROM analysis_queue')).toBe(40_000);
    });

    test('first_seen_at is the payload time of the first insert, never a later flush', async () => {
      // Present rows keep the time of their first batch; new ones took the second batch's time.
      const expected = all.map((ref, i) => ({
        name: ref.name,
        at: new Date(BASE + (i % 2 === 0 ? (i / 2) * 1000 : 1_000_000_000 + i * 1000)).toISOString(),
      }));
      const wrong = await count(
        `SELECT count(*) AS n FROM unnest($1::text[], $2::timestamptz[]) AS e(name, at)
          JOIN packages p ON p.name = e.name WHERE p.first_seen_at <> e.at`,
        [expected.map((e) => e.name), expected.map((e) => e.at)],
      );
      expect(wrong).toBe(0);
      const { rows } = await ctx.db.pool.query<{ first_seen_at: Date }>(
        'SELECT first_seen_at FROM packages WHERE name = $1',
        [all[1]?.name],
      );
      expect(rows[0]?.first_seen_at.toISOString()).toBe(new Date(BASE + 1_000_000_000 + 1000).toISOString());
    });

    test('a batch is a constant number of statements whatever its size', async () => {
      const sizes = [1, 10, 10_000];
      const counts: number[] = [];
      let from = 100_000;
      for (const size of sizes) {
        log.reset();
        expect(await store.insertBatch(rowsOf(pkgs(from, size, 'count')))).toHaveLength(size);
        counts.push(log.texts.length);
        from += size;
      }
      expect(counts).toEqual([5, 5, 5]);
      // BEGIN, staging DDL, COPY, INSERT … RETURNING (queueing in the same statement), COMMIT.
      expect(log.texts[0]).toBe('BEGIN');
      expect(log.texts[1]).toMatch(/^CREATE TEMP TABLE IF NOT EXISTS flush_staging_[0-9a-f]{8} /);
      expect(log.texts[2]).toMatch(/^COPY flush_staging_[0-9a-f]{8} .* FROM STDIN$/);
      expect(log.texts[3]).toMatch(/INSERT INTO packages[\s\S]*ON CONFLICT[\s\S]*INSERT INTO analysis_queue/);
      expect(log.texts[4]).toBe('COMMIT');
      log.reset();
      expect(await store.insertBatch([])).toEqual([]);
      expect(log.texts).toEqual([]);
    });

    test('duplicates within one batch insert and queue once', async () => {
      const [a, b] = pkgs(200_000, 2, 'dup');
      if (!a || !b) throw new Error('no packages');
      const inserted = await store.insertBatch(rowsOf([a, b, a, a, b]));
      expect(keysOf(inserted)).toEqual(keysOf([a, b]));
    });

    test('names and signatures needing COPY escapes cannot break the batch format', async () => {
      // Such values never pass validation; this proves COPY escaping, and that CHECK refuses them.
      const ref = { name: 'com.tab\tnew\\line\n.app', versionCode: 1, signature: 'a'.repeat(64) };
      const err = await store.insertBatch(rowsOf([ref])).catch((e: unknown) => e);
      expect((err as { code?: string }).code).toBe('23514');
      expect((err as { constraint?: string }).constraint).toBe('packages_name_valid');
    });
  });

  describe('CHECK constraints refuse a malformed row with a data-error SQLSTATE, and the whole batch', () => {
    const good = pkgs(300_000, 3, 'check');
    test.each<[string, PackageRef, string]>([
      [
        'a name that is no application id',
        { name: 'no dots', versionCode: 1, signature: 'a'.repeat(64) },
        '23514',
      ],
      [
        'a name over 255 characters',
        { name: `a.${'b'.repeat(254)}`, versionCode: 1, signature: 'a'.repeat(64) },
        '23514',
      ],
      ['an upper-case signature', { name: 'a.b', versionCode: 1, signature: 'A'.repeat(64) }, '23514'],
      ['a short signature', { name: 'a.b', versionCode: 1, signature: 'abc' }, '23514'],
      ['a negative versionCode', { name: 'a.b', versionCode: -1, signature: 'a'.repeat(64) }, '23514'],
      [
        'a versionCode beyond 2^53-1',
        { name: 'a.b', versionCode: 2 ** 53, signature: 'a'.repeat(64) },
        '23514',
      ],
      [
        'a versionCode that is no number',
        { name: 'a.b', versionCode: NaN, signature: 'a'.repeat(64) },
        '22P02',
      ],
    ])('%s', async (_why, bad, sqlstate) => {
      const err = await store.insertBatch(rowsOf([...good, bad])).catch((e: unknown) => e);
      expect((err as { code?: string }).code).toBe(sqlstate);
      // Class 22 (data exception) or 23 (integrity): the flusher's signal to isolate and dead-letter.
      expect((err as { code: string }).code).toMatch(/^2[23]/);
      expect(
        await count('SELECT count(*) AS n FROM packages WHERE name = ANY($1::text[])', [
          good.map((g) => g.name),
        ]),
      ).toBe(0);
      // The failed connection was discarded, not returned broken: the next batch works.
      expect(
        await store.insertBatch(rowsOf(pkgs(310_000, 1, `after${sqlstate}${_why.length}`))),
      ).toHaveLength(1);
    });
  });

  describe('lookupMany', () => {
    test('answers any number of keys with one query, found ones only', async () => {
      const refs = [...pkgs(0, 40_000, 'batch'), ...pkgs(0, 100, 'never-stored')];
      log.reset();
      const found = await store.lookupMany(refs);
      expect(log.texts).toHaveLength(1);
      expect(found.size).toBe(40_000);
      const one = found.get(packageKey(refs[1] as PackageRef));
      expect(one).toMatchObject({ ...refs[1], verdict: null, source: null, threatIndex: null, rev: 0 });
      expect(one?.id).toMatch(/^\d+$/);
      expect(one?.firstSeenAt).toBeInstanceOf(Date);
      expect(found.has(packageKey(refs[40_000] as PackageRef))).toBe(false);

      log.reset();
      expect((await store.lookupMany([])).size).toBe(0);
      expect(log.texts).toEqual([]);
    });

    test('the lookup is an index-only probe of the covering key index', async () => {
      const client = await ctx.db.pool.connect();
      try {
        await client.query('VACUUM ANALYZE packages');
        await client.query('SET enable_seqscan = off');
        const refs = pkgs(0, 50, 'batch');
        const { rows } = await client.query<{ 'QUERY PLAN': string }>(
          `EXPLAIN SELECT p.id FROM unnest($1::text[], $2::bigint[], $3::text[]) AS k(name, version_code, signature)
            JOIN packages p ON p.name = k.name AND p.version_code = k.version_code AND p.signature = k.signature`,
          [refs.map((r) => r.name), refs.map((r) => String(r.versionCode)), refs.map((r) => r.signature)],
        );
        expect(rows.map((r) => r['QUERY PLAN']).join('\n')).toMatch(/Index Only Scan using packages_key/);
      } finally {
        client.release();
      }
    });
  });

  describe('insertDirect (WRITE_MODE=direct and the Redis-down fallback)', () => {
    test('returns every row, including one another writer inserted concurrently, and queues each once', async () => {
      const [theirs, mine] = pkgs(400_000, 2, 'direct');
      if (!theirs || !mine) throw new Error('no packages');
      const other = await ctx.db.pool.connect();
      try {
        // Another writer has inserted `theirs` and not committed yet.
        await other.query('BEGIN');
        const { rows } = await other.query<{ id: string }>(
          `INSERT INTO packages (name, version_code, signature, first_seen_at) VALUES ($1, $2, $3, $4) RETURNING id`,
          [theirs.name, theirs.versionCode, theirs.signature, new Date(BASE).toISOString()],
        );
        await other.query('INSERT INTO analysis_queue (package_id) VALUES ($1)', [rows[0]?.id]);

        const direct = store.insertDirect(rowsOf([theirs, mine], 5000));
        // insertDirect waits on the other writer's uncommitted key; then the other commits.
        await waitFor(
          async () =>
            (await count(
              `SELECT count(*) AS n FROM pg_stat_activity
                WHERE datname = current_database() AND application_name = 'store-test' AND wait_event_type = 'Lock'`,
            )) === 1,
          { what: 'insertDirect to wait on the uncommitted row' },
        );
        await other.query('COMMIT');

        const result = await direct;
        expect([...result.keys()].sort()).toEqual(keysOf([theirs, mine]));
        const theirsStored = result.get(packageKey(theirs));
        expect(theirsStored?.id).toBe(String(rows[0]?.id));
        expect(theirsStored?.firstSeenAt.toISOString()).toBe(new Date(BASE).toISOString());
        expect(result.get(packageKey(mine))?.firstSeenAt.toISOString()).toBe(
          new Date(BASE + 5000 + 1000).toISOString(),
        );
      } finally {
        other.release();
      }
      expect(
        await count(
          `SELECT count(*) AS n FROM analysis_queue q JOIN packages p ON p.id = q.package_id WHERE p.name = ANY($1::text[])`,
          [[theirs.name, mine.name]],
        ),
      ).toBe(2);
    });

    test('concurrent writers of overlapping packages in different orders all succeed; each row stored and queued once', async () => {
      const refs = pkgs(500_000, 2000, 'race');
      const orders = [
        refs,
        [...refs].reverse(),
        refs.filter((_, i) => i % 2 === 0),
        [...refs].reverse().filter((_, i) => i % 3 === 0),
      ];
      const results = await Promise.all(orders.map((o) => store.insertDirect(rowsOf(o))));
      results.forEach((r, i) => expect([...r.keys()].sort()).toEqual(keysOf(orders[i] as PackageRef[])));
      // Every writer sees the same stored row for a key.
      const first = results[0] as Map<string, { id: string }>;
      for (const r of results.slice(1)) for (const [k, s] of r) expect(s.id).toBe(first.get(k)?.id);
      expect(
        await count(
          `SELECT count(*) AS n FROM analysis_queue q JOIN packages p ON p.id = q.package_id WHERE p.name = ANY($1::text[])`,
          [refs.map((r) => r.name)],
        ),
      ).toBe(2000);
    });
  });
});
