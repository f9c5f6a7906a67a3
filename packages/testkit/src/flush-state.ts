import { packageKey, RedisBuffer, type KeySchema, type PackageRef } from '@safepkg/core';
import type { Redis } from 'ioredis';
import type { Pool } from 'pg';
import { pkgs } from './packages';

/**
 * Buffers `count` deterministic packages straight into Redis through the same add script
 * the API uses (no HTTP in the way), first seen `firstSeenAt`. Returns their keys.
 */
export async function bufferPackages(
  buffer: RedisBuffer,
  count: number,
  namespace: string,
  firstSeenAt = Date.now(),
): Promise<string[]> {
  const refs: PackageRef[] = pkgs(0, count, namespace);
  const keys = refs.map(packageKey);
  for (let i = 0; i < keys.length; i += 5000) {
    await buffer.add(keys.slice(i, i + 5000).map((key) => ({ key, payload: { t: firstSeenAt } })));
  }
  return keys;
}

export interface FlushState extends StoredPackages {
  /** Entries still pending, and dead letters, over all given partitions. */
  pending: number;
  dead: number;
  /** Lease keys still present. */
  leases: number;
  /** Report keys (live deltas, in-flight sets) still present. */
  reportKeys: number;
}

export interface StoredPackages {
  /** Package keys stored in PostgreSQL, sorted. */
  storedKeys: string[];
  /** Rows in analysis_queue, distinct package ids among them, and rows with no package. */
  queued: number;
  queuedDistinct: number;
  queueOrphans: number;
}

/** What PostgreSQL holds: the stored package keys and the analysis queue's totals, by SQL alone. */
export async function storedPackages(pool: Pool): Promise<StoredPackages> {
  const stored = await pool.query<{ name: string; version_code: string; signature: string }>(
    'SELECT name, version_code, signature FROM packages',
  );
  const storedKeys = stored.rows
    .map((r) => packageKey({ name: r.name, versionCode: Number(r.version_code), signature: r.signature }))
    .sort();
  const q = await pool.query<{ queued: string; distinct_packages: string; orphans: string }>(
    `SELECT count(*) AS queued, count(DISTINCT q.package_id) AS distinct_packages,
            count(*) FILTER (WHERE p.id IS NULL) AS orphans
       FROM analysis_queue q LEFT JOIN packages p ON p.id = q.package_id`,
  );
  const row = q.rows[0] as { queued: string; distinct_packages: string; orphans: string };
  return {
    storedKeys,
    queued: Number(row.queued),
    queuedDistinct: Number(row.distinct_packages),
    queueOrphans: Number(row.orphans),
  };
}

/** What a flush left behind, read with SQL and Redis commands only (no product code in the way). */
export async function flushState(
  pool: Pool,
  redis: Redis,
  keys: KeySchema,
  partitions: number,
): Promise<FlushState> {
  const db = await storedPackages(pool);
  let pending = 0;
  let dead = 0;
  let leases = 0;
  let reportKeys = 0;
  for (let p = 0; p < partitions; p++) {
    const k = keys.partition(p);
    pending += await redis.zcard(k.pending);
    dead += await redis.hlen(k.dead);
    leases += await redis.exists(k.lock);
    reportKeys += await redis.exists(k.reports, k.reportsInflight, k.reportsInflightId);
  }
  return {
    ...db,
    pending,
    dead,
    leases,
    reportKeys,
  };
}

/** The buffer is empty and PostgreSQL holds the distinct packages (every time the check is made). */
export async function drained(
  pool: Pool,
  redis: Redis,
  keys: KeySchema,
  partitions: number,
  expected: number,
): Promise<boolean> {
  const s = await flushState(pool, redis, keys, partitions);
  return s.pending === 0 && s.storedKeys.length >= expected;
}
