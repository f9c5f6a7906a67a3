import {
  signerStatusOf,
  SignerStore,
  type Logger,
  type ResultCache,
  type SignerEvaluationInput,
  type VerdictLsn,
} from '@safepkg/core';
import type { Pool } from 'pg';
import { needPostgresWrite } from './dependency-errors';
import { publishVerdicts } from './verdict-publish';

/**
 * Records verdicts on signing certificates, then (after COMMIT) raises the shared verdict LSN
 * and writes the signers' new verdicts through the rev-guarded cache fill, exactly as
 * EvaluationService does for packages: the next check on any pod combines the new signer
 * verdict with every package it signs, and no replica behind the commit answers a lookup.
 */
export class SignerEvaluationService {
  private readonly store: SignerStore;

  constructor(
    private readonly pool: Pool,
    private readonly cache: ResultCache,
    private readonly logger: Logger,
    private readonly verdictLsn?: VerdictLsn,
  ) {
    this.store = new SignerStore(pool);
  }

  async record(evaluations: readonly SignerEvaluationInput[], actor: string): Promise<number> {
    const updated = await needPostgresWrite(
      'could not record signer evaluations',
      'evaluations',
      this.store.record(evaluations, actor),
    );
    const entries = updated.map((s) => ({ signature: s.signature, status: signerStatusOf(s) }));
    await publishVerdicts(
      'signer evaluations',
      { pool: this.pool, logger: this.logger, verdictLsn: this.verdictLsn },
      () => this.cache.fill([], entries),
    );
    return evaluations.length;
  }
}
