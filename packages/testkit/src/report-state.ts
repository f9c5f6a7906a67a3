import { packageKey, type KeySchema } from '@safepkg/core';
import type { Redis } from 'ioredis';
import type { Pool } from 'pg';

/** packageKey → stored reports and last_seen_at (epoch ms, or null), by SQL alone. */
export async function storedReports(
  pool: Pool,
): Promise<Map<string, { reports: number; lastSeenAt: number | null }>> {
  const { rows } = await pool.query<{
    name: string;
    version_code: string;
    signature: string;
    reports: string;
    last_seen_at: Date | null;
  }>('SELECT name, version_code, signature, reports, last_seen_at FROM packages');
  const out = new Map<string, { reports: number; lastSeenAt: number | null }>();
  for (const r of rows) {
    out.set(packageKey({ name: r.name, versionCode: Number(r.version_code), signature: r.signature }), {
      reports: Number(r.reports),
      lastSeenAt: r.last_seen_at ? r.last_seen_at.getTime() : null,
    });
  }
  return out;
}

/** SUM(reports) over packages. */
export async function totalStoredReports(pool: Pool): Promise<number> {
  const { rows } = await pool.query<{ total: string }>(
    'SELECT coalesce(sum(reports), 0) AS total FROM packages',
  );
  return Number(rows[0]?.total ?? 0);
}

/** Report keys (live deltas, in-flight sets and their ids) still in Redis over the partitions, by plain commands. */
export async function reportKeysLeft(redis: Redis, keys: KeySchema, partitions: number): Promise<number> {
  let left = 0;
  for (let p = 0; p < partitions; p++) {
    const k = keys.partition(p);
    left += await redis.exists(k.reports, k.reportsInflight, k.reportsInflightId);
  }
  return left;
}
