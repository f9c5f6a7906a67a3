import type { BufferEntry, RedisBuffer } from '@safepkg/core';

/** The lease of one partition as a round needs it: renewed between rounds, checked before every write. */
export interface HeldLease {
  readonly partition: number;
  /** True once a renewal failed; stays true. */
  readonly isLost: boolean;
  renew(): Promise<boolean>;
}

/** Where a tick stands in one leased partition: entries with after < score ≤ snapshot are still to flush. */
export interface PartitionCursor {
  readonly lease: HeldLease;
  /** The partition's seq when the tick took its lease: entries buffered later wait for the next tick. */
  readonly snapshot: number;
  after: number | null;
  exhausted: boolean;
}

export interface RoundEntry {
  partition: number;
  entry: BufferEntry;
}

/** Cursors still worth reading: not exhausted, lease not lost. */
export function liveCursors(cursors: readonly PartitionCursor[]): PartitionCursor[] {
  return cursors.filter((c) => !c.exhausted && !c.lease.isLost);
}

/**
 * Reads the next round: entries of several partitions, up to `size` in all, taking each
 * partition's window in turn until the round is full or every partition is exhausted.
 * Each read is a per-partition script call (one Redis Cluster slot each), itself split
 * by RedisBuffer into calls of at most READ_CHUNK entries so no script blocks Redis long.
 */
export async function readRound(
  buffer: RedisBuffer,
  cursors: readonly PartitionCursor[],
  size: number,
): Promise<RoundEntry[]> {
  const round: RoundEntry[] = [];
  for (const c of liveCursors(cursors)) {
    const want = size - round.length;
    if (want <= 0) break;
    const partition = c.lease.partition;
    const entries = await buffer.read(partition, c.after, c.snapshot, want);
    for (const entry of entries) round.push({ partition, entry });
    const last = entries[entries.length - 1];
    if (last) c.after = last.score;
    if (entries.length < want) c.exhausted = true;
  }
  return round;
}
