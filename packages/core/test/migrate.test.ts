import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { MigrationError, ensureDatabase, listMigrations, migrate, type Migration } from '@safepkg/core';
import { adminUrl } from '@safepkg/testkit';

// This file makes its own empty databases (not the migrated template) and drops them at the end.
const created: string[] = [];

async function admin<T>(fn: (c: Client) => Promise<T>): Promise<T> {
  const c = new Client({ connectionString: adminUrl() });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

function newName(): string {
  const name = `safepkg_migrate_${randomBytes(4).toString('hex')}`;
  created.push(name);
  return name;
}

async function emptyDatabase(): Promise<string> {
  const name = newName();
  await admin((c) => c.query(`CREATE DATABASE ${name}`));
  return adminUrl(name);
}

async function inDatabase<T>(url: string, fn: (c: Client) => Promise<T>): Promise<T> {
  const c = new Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

const appliedRows = (url: string) =>
  inDatabase(
    url,
    async (c) =>
      (
        await c.query<{ id: number; name: string; applied_at: Date }>(
          'SELECT * FROM safepkg_migrations ORDER BY id',
        )
      ).rows,
  );

afterAll(async () => {
  const failed = globalThis.__SAFEPKG_TEST_FAILED__ === true;
  await admin(async (c) => {
    for (const name of created) {
      if (failed) console.warn(`kept database ${name} of a failed test for reading`);
      else await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    }
  });
});

test('the migrations are numbered files, in order, with unique ids', () => {
  const migrations = listMigrations();
  expect(migrations.length).toBeGreaterThanOrEqual(3);
  // 1 … n with no gap: a migration number is never skipped once branches are merged.
  const ids = migrations.map((m) => m.id);
  expect(ids).toEqual(ids.map((_, i) => i + 1));
  expect(ids).toEqual([...new Set(ids)].sort((a, b) => a - b));
  for (const m of migrations)
    expect(m.name).toMatch(new RegExp(`^${String(m.id).padStart(3, '0')}_[a-z0-9_]+$`));
});

test('on an empty database every migration applies, and a second run is a no-op', async () => {
  const url = await emptyDatabase();
  const names = listMigrations().map((m) => m.name);
  expect(await migrate(url)).toEqual(names);

  const rows = await appliedRows(url);
  expect(rows.map((r) => r.name)).toEqual(names);
  const schema = await inDatabase(url, async (c) => ({
    tables: (
      await c.query<{ t: string }>(
        "SELECT tablename AS t FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename",
      )
    ).rows.map((r) => r.t),
    keyIndex: (
      await c.query<{ d: string }>("SELECT indexdef AS d FROM pg_indexes WHERE indexname = 'packages_key'")
    ).rows[0]?.d,
    trigger: (await c.query("SELECT 1 FROM pg_trigger WHERE tgname = 'evaluations_apply'")).rowCount,
    signerTrigger: (await c.query("SELECT 1 FROM pg_trigger WHERE tgname = 'signer_evaluations_apply'"))
      .rowCount,
  }));
  expect(schema.tables).toEqual([
    'analysis_queue',
    'evaluations',
    'packages',
    'report_flushes',
    'safepkg_migrations',
    'signer_evaluations',
    'signers',
    'verdict_changes',
    'verdict_feed_state',
  ]);
  expect(schema.keyIndex).toMatch(
    /UNIQUE INDEX packages_key .*\(name, version_code, signature\) INCLUDE \(id, first_seen_at, verdict, threat_index, source, rev\)/,
  );
  expect(schema.trigger).toBe(1);
  expect(schema.signerTrigger).toBe(1);

  expect(await migrate(url)).toEqual([]);
  expect(await appliedRows(url)).toEqual(rows);
});

test('004 backfills reports = 1 and last_seen_at = first_seen_at on existing rows; new rows start at 0', async () => {
  const url = await emptyDatabase();
  await migrate(
    url,
    listMigrations().filter((m) => m.id < 4),
  );
  const sig = 'a'.repeat(64);
  await inDatabase(url, (c) =>
    c.query(
      `INSERT INTO packages (name, version_code, signature, first_seen_at)
       VALUES ('com.old.one', 1, $1, '2026-01-02T03:04:05Z'), ('com.old.two', 2, $1, '2026-02-03T04:05:06Z')`,
      [sig],
    ),
  );
  expect(await migrate(url)).toEqual(
    listMigrations()
      .filter((m) => m.id >= 4)
      .map((m) => m.name),
  );
  const rows = await inDatabase(url, async (c) => {
    await c.query(
      `INSERT INTO packages (name, version_code, signature, first_seen_at) VALUES ('com.new.one', 1, $1, now())`,
      [sig],
    );
    return (
      await c.query<{ name: string; reports: string; same: boolean | null }>(
        'SELECT name, reports, last_seen_at = first_seen_at AS same FROM packages ORDER BY name',
      )
    ).rows;
  });
  expect(rows).toEqual([
    { name: 'com.new.one', reports: '0', same: null },
    { name: 'com.old.one', reports: '1', same: true },
    { name: 'com.old.two', reports: '1', same: true },
  ]);
});

test('two concurrent runs both succeed and apply each migration once', async () => {
  const url = await emptyDatabase();
  const names = listMigrations().map((m) => m.name);
  const [a, b] = await Promise.all([migrate(url), migrate(url)]);
  // One of them applied everything; the other waited on the lock and found nothing to do.
  expect([...(a ?? []), ...(b ?? [])].sort()).toEqual([...names].sort());
  expect([a, b].some((r) => r?.length === 0)).toBe(true);
  expect((await appliedRows(url)).map((r) => r.name)).toEqual(names);
});

test('a failing migration is rolled back whole, reported by name, and the next run resumes from it', async () => {
  const url = await emptyDatabase();
  const first: Migration = { id: 1, name: '001_first', sql: 'CREATE TABLE first_table (id int)' };
  const broken: Migration = {
    id: 2,
    name: '002_second',
    sql: 'CREATE TABLE second_table (id int); SELECT 1/0',
  };
  const err = await migrate(url, [first, broken]).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(MigrationError);
  expect((err as MigrationError).code).toBe('migration_failed');
  expect((err as MigrationError).message).toContain('002_second');
  const state = async () =>
    inDatabase(url, async (c) => ({
      applied: (await c.query<{ name: string }>('SELECT name FROM safepkg_migrations ORDER BY id')).rows.map(
        (r) => r.name,
      ),
      tables: (
        await c.query<{ t: string }>(
          "SELECT tablename AS t FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
        )
      ).rows.map((r) => r.t),
    }));
  expect(await state()).toEqual({ applied: ['001_first'], tables: ['first_table', 'safepkg_migrations'] });

  const fixed: Migration = { ...broken, sql: 'CREATE TABLE second_table (id int)' };
  expect(await migrate(url, [first, fixed])).toEqual(['002_second']);
  expect(await state()).toEqual({
    applied: ['001_first', '002_second'],
    tables: ['first_table', 'safepkg_migrations', 'second_table'],
  });
});

test('ensureDatabase creates a missing database once, also when two processes race', async () => {
  const name = newName();
  const url = adminUrl(name);
  const results = await Promise.all([ensureDatabase(url), ensureDatabase(url)]);
  expect(results.sort()).toEqual([false, true]);
  expect(await ensureDatabase(url)).toBe(false);
  expect(
    await admin(
      async (c) => (await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).rowCount,
    ),
  ).toBe(1);
  await expect(ensureDatabase(adminUrl(''))).rejects.toBeInstanceOf(MigrationError);
});
