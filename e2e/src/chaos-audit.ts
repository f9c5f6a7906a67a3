import type { KeySchema } from '@safepkg/core';
import { storedPackages, storedReports } from '@safepkg/testkit';
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

export interface ReportAudit {
  /** Sum over packages of the requests answered 200 that carried them. */
  sent: number;
  /** SUM(reports) in PostgreSQL. */
  stored: number;
  /** Per package, reports answered 200 but not stored, summed. */
  lost: number;
  /** Per package, stored reports beyond those answered 200 plus the ambiguous attempts, summed. */
  over: number;
  /** Attempts with an unknowable outcome (no answer, 503 unavailable), summed over their packages. */
  ambiguous: number;
  /** Stored reports beyond those answered 200 that the ambiguous attempts explain. */
  overWithinAmbiguous: number;
}

/**
 * Per package: sent ≤ stored ≤ sent + ambiguous. A report is lost when a 200 was answered and
 * it is not in PostgreSQL; an over-count beyond the attempts whose answer never came back (the
 * api counted, then died before answering) is a double count of the flush protocol.
 */
export async function auditReports(
  pool: Pool,
  sent: ReadonlyMap<string, number>,
  ambiguous: ReadonlyMap<string, number>,
): Promise<ReportAudit> {
  const stored = await storedReports(pool);
  const audit: ReportAudit = { sent: 0, stored: 0, lost: 0, over: 0, ambiguous: 0, overWithinAmbiguous: 0 };
  for (const n of sent.values()) audit.sent += n;
  for (const n of ambiguous.values()) audit.ambiguous += n;
  const keys = new Set([...sent.keys(), ...stored.keys()]);
  for (const key of keys) {
    const want = sent.get(key) ?? 0;
    const have = stored.get(key)?.reports ?? 0;
    audit.stored += have;
    if (have < want) audit.lost += want - have;
    const extra = Math.max(0, have - want);
    const explained = Math.min(extra, ambiguous.get(key) ?? 0);
    audit.overWithinAmbiguous += explained;
    audit.over += extra - explained;
  }
  return audit;
}
