import { join } from 'node:path';
import { KeySchema, RedisBuffer, type Config } from '@safepkg/core';
import {
  contextEnv,
  flushState,
  freePort,
  startProcess,
  waitFor,
  type ManagedProcess,
  type TestContext,
} from '@safepkg/testkit';

const FLUSHER_MAIN = join(__dirname, '..', '..', 'apps', 'flusher', 'dist', 'main.js');

/**
 * The built flusher as a child process, without waiting for /healthz: with a crash point
 * it may kill itself before its health server has answered once.
 */
export async function startFlusherProcess(
  config: Config,
  extra: Record<string, string> = {},
): Promise<ManagedProcess> {
  const env = contextEnv(config, { LOG_LEVEL: 'info', FLUSHER_PORT: String(await freePort()), ...extra });
  return startProcess(process.execPath, [FLUSHER_MAIN], env);
}

/** A case of its own inside the file's context: a sub-prefix on Redis and empty package tables. */
export async function freshCase(ctx: TestContext, name: string, over: Partial<Config> = {}) {
  const config: Config = { ...ctx.config, ...over, keyPrefix: `${ctx.config.keyPrefix}${name}` };
  const keys = new KeySchema(config.keyPrefix);
  await ctx.db.pool.query('TRUNCATE packages, analysis_queue CASCADE');
  const buffer = new RedisBuffer(ctx.redis, keys, config.bufferPartitions, config.maxBufferDepth);
  const state = () => flushState(ctx.db.pool, ctx.redis, keys, config.bufferPartitions);
  return { config, keys, buffer, state };
}

/**
 * Plays the analyser: takes every queued package off analysis_queue, as a finished analysis
 * does. A re-flush that queued a package a second time would put it back, so the union of
 * what was taken and what is left must be exactly the stored set, without overlap.
 */
export async function analyseQueued(ctx: TestContext): Promise<string[]> {
  const { rows } = await ctx.db.pool.query<{ package_id: string }>(
    'DELETE FROM analysis_queue RETURNING package_id',
  );
  return rows.map((r) => String(r.package_id));
}

/** Queue entries over the whole run (taken earlier + still queued): total, distinct, and how many have no package. */
export async function queueTotals(ctx: TestContext, taken: readonly string[]) {
  const { rows } = await ctx.db.pool.query<{ id: string }>('SELECT package_id AS id FROM analysis_queue');
  const all = [...taken, ...rows.map((r) => String(r.id))];
  const distinct = [...new Set(all)];
  const { rows: known } = await ctx.db.pool.query<{ n: string }>(
    'SELECT count(*) AS n FROM packages WHERE id = ANY($1::bigint[])',
    [distinct],
  );
  return { total: all.length, distinct: distinct.length, orphans: distinct.length - Number(known[0]?.n) };
}

/** Sums of the "flushed round" log lines of a flusher's output. */
export function loggedFlushes(output: string): { rows: number; newRows: number } {
  let rows = 0;
  let newRows = 0;
  for (const line of output.split('\n')) {
    if (!line.includes('"flushed round"')) continue;
    const entry = JSON.parse(line) as { rows: number; newRows: number };
    rows += entry.rows;
    newRows += entry.newRows;
  }
  return { rows, newRows };
}

/** Waits until the buffer is empty and PostgreSQL holds `expected` packages. */
export async function waitDrained(
  state: () => ReturnType<typeof flushState>,
  expected: number,
  what = 'the buffer to drain',
): Promise<void> {
  await waitFor(
    async () => {
      const s = await state();
      return s.pending === 0 && s.storedKeys.length === expected;
    },
    { what, timeoutMs: 60_000, intervalMs: 100 },
  );
}
