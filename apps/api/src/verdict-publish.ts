import { currentWalLsn, UnavailableError, type Logger, type VerdictLsn } from '@safepkg/core';
import type { Pool } from 'pg';

/**
 * What every verdict write does after its COMMIT, package or signer alike: raise the shared
 * "last verdict LSN" to the primary's WAL position (so no pod looks up on a replica that has not
 * replayed it), then write the new status through the rev-guarded cache fill (so the next check
 * on any pod answers it). Tried three times; then 503, telling the client to retry the whole
 * request, which is safe: history gains a duplicate row, the status stays the same.
 */
export async function publishVerdicts(
  what: string,
  deps: { pool: Pool; logger: Logger; verdictLsn?: VerdictLsn },
  fill: () => Promise<unknown>,
): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      if (deps.verdictLsn) await deps.verdictLsn.raise(await currentWalLsn(deps.pool));
      await fill();
      return;
    } catch (err) {
      if (attempt >= 3) {
        deps.logger.error({ err }, `${what} committed but verdict LSN or cache write-through failed`);
        throw new UnavailableError(`${what} stored, but caches could not be updated; retry the request`, {
          cause: err,
        });
      }
      await new Promise((r) => setTimeout(r, 50 * attempt));
    }
  }
}
