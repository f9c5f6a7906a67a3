import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client, type ClientConfig } from 'pg';
import { pgConnection } from './db';
import { SafepkgError } from './errors';

export interface Migration {
  id: number;
  name: string;
  sql: string;
}

// Beside src/ and dist/ in the package, like the Lua scripts.
const MIGRATIONS_DIR = join(__dirname, '..', 'migrations');
// Any constant: every migrator of every safepkg process serialises on it.
const MIGRATION_LOCK = 7_231_994_001;

export class MigrationError extends SafepkgError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('migration_failed', message, options);
  }
}

/** The numbered migrations, in order: files named `NNN_description.sql`. */
export function listMigrations(dir = MIGRATIONS_DIR): Migration[] {
  return readdirSync(dir)
    .filter((f) => /^\d{3}_[a-z0-9_]+\.sql$/.test(f))
    .sort()
    .map((f) => ({
      id: Number(f.slice(0, 3)),
      name: f.replace(/\.sql$/, ''),
      sql: readFileSync(join(dir, f), 'utf8'),
    }));
}

/**
 * Applies every migration not yet applied, each in its own transaction, under a
 * session advisory lock: safe to run twice, and from several processes at once
 * (the second waits, then finds nothing to do). Returns the names it applied.
 */
export async function migrate(
  connection: string | ClientConfig,
  migrations = listMigrations(),
): Promise<string[]> {
  const client = new Client(typeof connection === 'string' ? pgConnection(connection) : connection);
  await client.connect();
  const applied: string[] = [];
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
    await client.query(`CREATE TABLE IF NOT EXISTS safepkg_migrations (
      id integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const done = new Set(
      (await client.query<{ id: number }>('SELECT id FROM safepkg_migrations')).rows.map((r) => r.id),
    );
    for (const m of migrations) {
      if (done.has(m.id)) continue;
      try {
        await client.query('BEGIN');
        await client.query(m.sql);
        await client.query('INSERT INTO safepkg_migrations (id, name) VALUES ($1, $2)', [m.id, m.name]);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw new MigrationError(`migration ${m.name} failed: ${(err as Error).message}`, { cause: err });
      }
      applied.push(m.name);
    }
  } finally {
    await client.end().catch(() => undefined);
  }
  return applied;
}

/**
 * Creates the database named in the URL if it does not exist, connecting to the
 * server's `postgres` database to do so. Returns true if it created it.
 */
export async function ensureDatabase(databaseUrl: string): Promise<boolean> {
  const url = new URL(databaseUrl);
  const name = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (!name) throw new MigrationError('DATABASE_URL names no database');
  url.pathname = '/postgres';
  const client = new Client(pgConnection(url.toString()));
  await client.connect();
  try {
    const exists = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (exists.rowCount) return false;
    await client.query(`CREATE DATABASE "${name.replace(/"/g, '""')}"`);
    return true;
  } catch (err) {
    // Another process created it between our check and CREATE: PostgreSQL says so with
    // 42P04, or, when both CREATEs run at once, with a unique violation on pg_database.
    const code = (err as { code?: string }).code;
    if (code === '42P04' || code === '23505') return false;
    throw err;
  } finally {
    await client.end().catch(() => undefined);
  }
}
