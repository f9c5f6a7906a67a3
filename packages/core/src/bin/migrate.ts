#!/usr/bin/env node
// `safepkg-migrate`: creates the database if missing and applies pending migrations.
import { loadConfig } from '../config';
import { ensureDatabase, migrate } from '../migrate';

async function main(): Promise<void> {
  const config = loadConfig(process.env);
  if (await ensureDatabase(config.databaseUrl)) console.log('created database');
  const applied = await migrate(config.databaseUrl);
  console.log(applied.length ? `applied ${applied.join(', ')}` : 'database is up to date');
}

main().catch((err: unknown) => {
  console.error(`migrate failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
