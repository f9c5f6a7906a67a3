import type { KeySchema } from '@safepkg/core';
import { storedPackages } from '@safepkg/testkit';
import type { Redis } from 'ioredis';
import type { Pool } from 'pg';

export interface BufferAudit {
  /** Members of every pending zset. */
  pending: number;
  /** Pending members with no data entry (a half-buffered add). */
  pendingWithoutData: string[];
  /** Data entries with no pending member (invisible to every flush). */
  dataWithoutPending: string[];
  pendingKeys: Set<string>;
}

/** Reads every partition's pending zset and data hash and lists anything only in one of them. */
export async function auditBuffer(redis: Redis, keys: KeySchema, partitions: number): Promise<BufferAudit> {
  const audit: BufferAudit = {
    pending: 0,
    pendingWithoutData: [],
    dataWithoutPending: [],
    pendingKeys: new Set(),
  };
  for (let p = 0; p < partitions; p++) {
    const k = keys.partition(p);
    const [members, fields] = await Promise.all([redis.zrange(k.pending, '0', '-1'), redis.hkeys(k.data)]);
    const data = new Set(fields);
    const pending = new Set(members);
    audit.pending += members.length;
    for (const m of members) {
      audit.pendingKeys.add(m);
      if (!data.has(m)) audit.pendingWithoutData.push(m);
    }
    for (const f of fields) if (!pending.has(f)) audit.dataWithoutPending.push(f);
  }
  return audit;
}

export interface StoredAudit {
  /** packageKey of every row of packages. */
  stored: Set<string>;
  rows: number;
  queued: number;
  queuedDistinct: number;
  /** Queue rows whose package does not exist. */
  orphans: number;
}

export async function auditStored(pool: Pool): Promise<StoredAudit> {
  const { storedKeys, queued, queuedDistinct, queueOrphans } = await storedPackages(pool);
  return {
    stored: new Set(storedKeys),
    rows: storedKeys.length,
    queued,
    queuedDistinct,
    orphans: queueOrphans,
  };
}

/** Keys in `expected` missing from `actual`, and keys in `actual` not in `expected`. */
export function setDiff(
  expected: Iterable<string>,
  actual: Set<string>,
): { missing: string[]; extra: string[] } {
  const exp = new Set(expected);
  return {
    missing: [...exp].filter((k) => !actual.has(k)),
    extra: [...actual].filter((k) => !exp.has(k)),
  };
}
