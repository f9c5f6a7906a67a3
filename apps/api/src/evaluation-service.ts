import {
  currentWalLsn,
  EvaluationStore,
  packageKey,
  statusOf,
  UnavailableError,
  type EvaluationInput,
  type Logger,
  type ResultCache,
  type VerdictLsn,
} from '@safepkg/core';
import type { Pool } from 'pg';
import { needDependency, needPostgresWrite } from './dependency-errors';

/**
 * Records verdicts and writes the packages' new status through the rev-guarded cache
 * fill after COMMIT, so the next check on any pod answers the new verdict at once. Before
 * the cache, it raises the shared "last verdict LSN" to the primary's WAL position after the
 * COMMIT, so that no pod looks the package up on a replica that has not replayed it yet.
 */
export class EvaluationService {
  private readonly store: EvaluationStore;

  constructor(
    private readonly pool: Pool,
    private readonly cache: ResultCache,
    private readonly logger: Logger,
    private readonly verdictLsn?: VerdictLsn,
  ) {
    this.store = new EvaluationStore(pool);
  }

  async record(evaluations: readonly EvaluationInput[], actor: string): Promise<number> {
    const updated = await needPostgresWrite(
      'could not record evaluations',
      'evaluations',
      this.store.record(evaluations, actor),
    );
    const entries = updated.map((p) => ({ key: packageKey(p), status: statusOf(p) }));
    // The verdicts are committed; the cache must not keep serving the old ones. A retry of
    // the whole request is safe (history gains a duplicate row, status stays the same).
    for (let attempt = 1; ; attempt++) {
      try {
        if (this.verdictLsn) await this.verdictLsn.raise(await currentWalLsn(this.pool));
        await this.cache.fill(entries);
        return evaluations.length;
      } catch (err) {
        if (attempt >= 3) {
          this.logger.error({ err }, 'evaluations committed but verdict LSN or cache write-through failed');
          throw new UnavailableError(
            'evaluations stored, but caches could not be updated; retry the request',
            {
              cause: err,
            },
          );
        }
        await new Promise((r) => setTimeout(r, 50 * attempt));
      }
    }
  }

  claim(limit: number, leaseMs: number) {
    return needDependency('could not claim packages', this.store.claim(limit, leaseMs));
  }
}
