import type { Config } from '@safepkg/core';
import type { PackageResult, Status } from './check-service';

/** A result as answered: with how long the device may keep it. */
export type AnsweredResult = PackageResult & { cacheTtlS: number };

export type AnswerTtls = Pick<
  Config,
  'answerTtlUnknownS' | 'answerTtlSafeS' | 'answerTtlSuspiciousS' | 'answerTtlMaliciousS'
>;

/**
 * How long a device may keep each result before asking again (`cacheTtlS`), by status. A
 * degraded answer was given without one of the stores, so any of its results may be wrong in
 * either direction (a stored verdict answered as pending, a pending package answered as
 * unknown): each is capped at the unknown lifetime, and the device re-asks as soon as it would
 * for a package under analysis.
 */
export class AnswerTtl {
  private readonly byStatus: Record<Status, number>;

  constructor(ttls: AnswerTtls) {
    this.byStatus = {
      unknown: ttls.answerTtlUnknownS,
      safe: ttls.answerTtlSafeS,
      suspicious: ttls.answerTtlSuspiciousS,
      malicious: ttls.answerTtlMaliciousS,
    };
  }

  of(status: Status, degraded: boolean): number {
    const ttl = this.byStatus[status];
    return degraded ? Math.min(ttl, this.byStatus.unknown) : ttl;
  }

  /**
   * Adds `cacheTtlS` to each result in place: the check path builds fresh result objects for
   * every request, and a copy per result would cost an allocation per package on the hot path.
   */
  stamp(results: PackageResult[], degraded: boolean): AnsweredResult[] {
    for (const r of results) (r as AnsweredResult).cacheTtlS = this.of(r.status, degraded);
    return results as AnsweredResult[];
  }
}
