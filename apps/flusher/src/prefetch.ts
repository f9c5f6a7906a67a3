import type { RoundEntry } from './flush-round';

/** The next round, read while the current one is written. */
export interface Prefetch {
  /** The round, or the read's error: awaited only when the round is wanted. */
  readonly entries: Promise<RoundEntry[]>;
  /** Settles when the read has ended, never rejects: what a tick that drops the round waits for. */
  readonly settled: Promise<void>;
}

/**
 * Wraps a read started ahead of its use. The handler attached at once is what keeps a read
 * failing while the current round is still being written from becoming an unhandled rejection
 * (which would crash the process): its error surfaces where `entries` is awaited, or is dropped
 * with the round if the tick has already failed or stopped.
 */
export function startPrefetch(read: Promise<RoundEntry[]>): Prefetch {
  const settled = read.then(
    () => undefined,
    () => undefined,
  );
  return { entries: read, settled };
}
