import { percentiles, round } from './stats';

/** One replication-lag sample: the replica asked first, then the primary. */
export interface LagSample {
  /** Date.now() just before the replica was asked. */
  sentAt: number;
  /** Date.now() once both had answered. */
  receivedAt: number;
  /** The replica's pg_last_wal_replay_lsn(), as a byte position. */
  replayLsn: number;
  /** The primary's pg_current_wal_lsn(), read after the replica's: so `behind` errs high, never low. */
  primaryLsn: number;
  /** primaryLsn − replayLsn (≥ 0). */
  bytesBehind: number;
  /** The api's replay lag (REPLICA_POLL_SQL: 0 when everything received is replayed); null if unknown. */
  lagMs: number | null;
  /** pg_last_xact_replay_timestamp() as epoch ms: the primary's commit time of the last replayed transaction. */
  lastReplayedCommitAt: number | null;
}

export interface Spread {
  samples: number;
  p50: number;
  p99: number;
  max: number;
}

export interface LagWindow {
  /** Samples sent within the window, and their mean spacing (the sampler's real interval). */
  samples: number;
  meanIntervalMs: number;
  bytesBehind: Spread;
  lagMs: Spread;
  /**
   * For each commit first seen replayed in the window (the newest one per sample), an upper
   * bound of how long after its commit on the primary it was replayed: the answer time of the
   * sample that first showed it, minus its commit time. Commits overtaken between two samples
   * are not seen.
   */
  replayDelayMs: Spread;
}

export interface CatchUp {
  /** The primary's commit time of the last transaction the replica replayed (epoch ms). */
  lastCommitAt: number;
  /**
   * That commit was replayed between `lowerMs` and `upperMs` after it was committed: after the
   * last sample that did not show it was sent, and before the first that did was answered.
   */
  lowerMs: number;
  upperMs: number;
}

function spread(xs: readonly number[]): Spread {
  const [p50 = Number.NaN, p99 = Number.NaN] = percentiles(xs, [50, 99]);
  return {
    samples: xs.length,
    p50: round(p50, 1),
    p99: round(p99, 1),
    max: xs.length ? round(Math.max(...xs), 1) : Number.NaN,
  };
}

/** Lag of the samples sent within [fromMs, toMs]: bytes behind and the api's lag, p50/p99/max. */
export function summariseLag(samples: readonly LagSample[], fromMs: number, toMs: number): LagWindow {
  const inside = samples.filter((s) => s.sentAt >= fromMs && s.sentAt <= toMs);
  const gaps = inside.slice(1).map((s, i) => s.sentAt - (inside[i] as LagSample).sentAt);
  const delays: number[] = [];
  // From the second sample on: what the first one shows may have been replayed at any time before.
  for (let i = 1; i < samples.length; i++) {
    const s = samples[i] as LagSample;
    const commitAt = s.lastReplayedCommitAt;
    if (s.sentAt < fromMs || s.sentAt > toMs || commitAt === null) continue;
    if ((samples[i - 1] as LagSample).lastReplayedCommitAt !== commitAt)
      delays.push(Math.max(0, s.receivedAt - commitAt));
  }
  return {
    samples: inside.length,
    meanIntervalMs: gaps.length ? round(gaps.reduce((a, b) => a + b, 0) / gaps.length, 1) : Number.NaN,
    bytesBehind: spread(inside.map((s) => s.bytesBehind)),
    lagMs: spread(inside.flatMap((s) => (s.lagMs === null ? [] : [s.lagMs]))),
    replayDelayMs: spread(delays),
  };
}

/**
 * When the replica had replayed the commit `lastCommitAt` (the primary's clock; on one machine
 * the same as Date.now()): bounded by the samples around the first one whose replayed commit
 * time reached it. Null if no sample shows it replayed.
 */
export function catchUp(samples: readonly LagSample[], lastCommitAt: number): CatchUp | null {
  const i = samples.findIndex(
    (s) => s.lastReplayedCommitAt !== null && s.lastReplayedCommitAt >= lastCommitAt,
  );
  if (i < 0) return null;
  const first = samples[i] as LagSample;
  const before = i > 0 ? (samples[i - 1] as LagSample) : null;
  return {
    lastCommitAt,
    lowerMs: round(Math.max(0, (before?.sentAt ?? lastCommitAt) - lastCommitAt), 1),
    upperMs: round(Math.max(0, first.receivedAt - lastCommitAt), 1),
  };
}
