import {
  currentWalLsn,
  signerStatusOf,
  SignerStore,
  UnavailableError,
  type Logger,
  type ResultCache,
  type SignerEvaluationInput,
  type VerdictLsn,
} from '@safepkg/core';
import type { Pool } from 'pg';
import { needPostgresWrite } from './dependency-errors';

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
    // Committed: the cached verdicts (or negative entries) must not keep answering. A retry of
    // the whole request is safe (history gains a duplicate row, the verdict stays the same).
    for (let attempt = 1; ; attempt++) {
      try {
        if (this.verdictLsn) await this.verdictLsn.raise(await currentWalLsn(this.pool));
        await this.cache.fill([], entries);
        return evaluations.length;
      } catch (err) {
        if (attempt >= 3) {
          this.logger.error(
            { err },
            'signer evaluations committed but verdict LSN or cache write-through failed',
          );
          throw new UnavailableError(
            'signer evaluations stored, but caches could not be updated; retry the request',
            { cause: err },
          );
        }
        await new Promise((r) => setTimeout(r, 50 * attempt));
      }
    }
  }
}
