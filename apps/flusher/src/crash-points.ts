import { ConfigError } from '@safepkg/core';

/**
 * Named points of the flush protocol where a fault test may crash the flusher. Each one
 * leaves a different state behind (see docs/faults-flusher.md):
 * - lease-held:   lease taken, nothing read yet (the lease lingers until LOCK_TTL_MS)
 * - after-read:   a batch read from Redis, nothing written (from the 2nd round on, the previous
 *                 round's confirm may still be running beside it)
 * - after-commit: the batch committed in PostgreSQL, nothing confirmed in Redis
 * - mid-confirm:  between two compare-and-delete calls of one committed batch
 * - reports-taken: report deltas moved to in-flight sets under their flush ids, nothing written
 * - before-reports-clear: a transaction that applied report sets committed (entries confirmed),
 *                   the in-flight sets not yet dropped
 * - retention-before-commit: a retention batch ran its DELETE, not committed (rolled back by the
 *                   kill); counts batches that deleted something
 * - retention-batch-deleted: a retention batch committed; its cursor not yet written, its cache
 *                   entries not dropped, the lease left to expire; counts as above
 */
export const CRASH_POINTS = [
  'lease-held',
  'after-read',
  'after-commit',
  'mid-confirm',
  'reports-taken',
  'before-reports-clear',
  'retention-before-commit',
  'retention-batch-deleted',
] as const;
export type CrashPoint = (typeof CRASH_POINTS)[number];

/** Called at each crash point; in-process tests pass async hooks to act there (steal a lease, …). */
export type Checkpoint = (point: CrashPoint) => void | Promise<void>;

function isCrashPoint(s: string): s is CrashPoint {
  return (CRASH_POINTS as readonly string[]).includes(s);
}

/**
 * Fault-test hook: `SAFEPKG_TEST_CRASH_AT=<point>[:<n>]` makes the process die by SIGKILL
 * (no cleanup, like `kill -9`) the n-th time (default 1st) it reaches that point. Unset in
 * production. A misspelt point fails the start, or a fault test would silently test nothing.
 */
export function crashPointFromEnv(env: NodeJS.ProcessEnv): Checkpoint | undefined {
  const spec = env.SAFEPKG_TEST_CRASH_AT;
  if (!spec) return undefined;
  const [target = '', nth = '1'] = spec.split(':');
  if (!isCrashPoint(target) || !/^[1-9]\d*$/.test(nth)) {
    throw new ConfigError([
      {
        path: 'SAFEPKG_TEST_CRASH_AT',
        message: `must be <point>[:<n>] with point one of ${CRASH_POINTS.join(', ')}`,
      },
    ]);
  }
  let remaining = Number(nth);
  return (point) => {
    if (point === target && --remaining <= 0) process.kill(process.pid, 'SIGKILL');
  };
}
