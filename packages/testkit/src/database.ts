import { createHash, randomBytes } from 'node:crypto';
import { Client, Pool } from 'pg';
import { listMigrations, migrate } from '@safepkg/core';

/** The server tests create their databases on (trust auth locally). */
export function adminUrl(database = 'postgres'): string {
  const base = process.env.TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const u = new URL(base);
  u.pathname = `/${database}`;
  return u.toString();
}

async function withAdmin<T>(fn: (c: Client) => Promise<T>): Promise<T> {
  const c = new Client({ connectionString: adminUrl() });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}

/**
 * A migrated template named after the migrations' content, built once per content
 * (under an advisory lock, so parallel jest workers build it once) and then copied
 * per test file with CREATE DATABASE … TEMPLATE, which is much faster than migrating.
 */
export async function ensureTemplate(): Promise<string> {
  const digest = createHash('sha1');
  for (const m of listMigrations()) digest.update(m.name).update(m.sql);
  const name = `safepkg_tpl_${digest.digest('hex').slice(0, 12)}`;
  await withAdmin(async (c) => {
    await c.query('SELECT pg_advisory_lock(7231994002)');
    try {
      const exists = await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
      if (exists.rowCount) return;
      const building = `${name}_building`;
      await c.query(`DROP DATABASE IF EXISTS ${building}`);
      await c.query(`CREATE DATABASE ${building}`);
      await migrate(adminUrl(building));
      await c.query(`ALTER DATABASE ${building} RENAME TO ${name}`);
      await c.query(`ALTER DATABASE ${name} WITH IS_TEMPLATE true`);
    } finally {
      await c.query('SELECT pg_advisory_unlock(7231994002)');
    }
  });
  return name;
}

export interface TestDatabase {
  name: string;
  url: string;
  pool: Pool;
  /** Drops the database, or keeps it (and says so) when `keep` is true. */
  close(keep: boolean): Promise<void>;
}

export async function createTestDatabase(label = 'test'): Promise<TestDatabase> {
  const template = await ensureTemplate();
  const name = `safepkg_${label
    .replace(/[^a-z0-9]/gi, '_')
    .toLowerCase()
    .slice(0, 20)}_${randomBytes(4).toString('hex')}`;
  for (let attempt = 0; ; attempt++) {
    try {
      await withAdmin((c) => c.query(`CREATE DATABASE ${name} TEMPLATE ${template}`));
      break;
    } catch (err) {
      // Two files copying the template at the same instant: PostgreSQL refuses one; retry.
      if (attempt < 20 && /being accessed by other users/.test((err as Error).message)) {
        await new Promise((r) => setTimeout(r, 100 + Math.random() * 200));
        continue;
      }
      throw err;
    }
  }
  const url = adminUrl(name);
  const pool = new Pool({ connectionString: url, max: 5 });
  return {
    name,
    url,
    pool,
    async close(keep: boolean) {
      // pool.end() resolves before its connections have closed; DROP … WITH (FORCE) can then
      // terminate one, and that expected error must not surface as an unhandled pool error.
      pool.on('error', () => undefined);
      await pool.end().catch(() => undefined);
      if (keep) {
        console.warn(`kept database ${name} of a failed test for reading`);
        return;
      }
      await withAdmin((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
    },
  };
}
