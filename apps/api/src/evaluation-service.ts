import {
  EvaluationStore,
  packageKey,
  statusOf,
  type EvaluationInput,
  type Logger,
  type ResultCache,
  type VerdictLsn,
} from '@safepkg/core';
import type { Pool } from 'pg';
import { needDependency, needPostgresWrite } from './dependency-errors';
import { publishVerdicts } from './verdict-publish';

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
    await publishVerdicts(
      'evaluations',
      { pool: this.pool, logger: this.logger, verdictLsn: this.verdictLsn },
      () => this.cache.fill(entries),
    );
    return evaluations.length;
  }

  claim(limit: number, leaseMs: number) {
    return needDependency('could not claim packages', this.store.claim(limit, leaseMs));
  }
}
