import type { Pool } from 'pg';
import type { KeySchema } from './keys';
import type { RedisClient } from './redis-client';
import { runScript } from './scripts';

/** PostgreSQL's `X/Y` LSN text as one number (X is the high 32 bits). */
export function parseLsn(text: string): bigint {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text.trim());
  if (!m) throw new Error(`not an LSN: ${JSON.stringify(text)}`);
  return (BigInt(`0x${m[1]}`) << 32n) + BigInt(`0x${m[2]}`);
}

/** 16 upper-case hex digits: the form the lsn-raise script compares. */
export function lsnKeyValue(lsn: bigint): string {
  return lsn.toString(16).toUpperCase().padStart(16, '0');
}

/**
 * The primary's current WAL write position. Asked after a COMMIT returned, it is at or past
 * that commit's record, so a replica that replayed this far sees the commit.
 */
export async function currentWalLsn(pool: Pick<Pool, 'query'>): Promise<bigint> {
  const { rows } = await pool.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
  return parseLsn((rows[0] as { lsn: string }).lsn);
}

/**
 * The "last verdict LSN" in Redis, shared by every pod: each verdict commit raises it, and
 * a lookup may only go to a replica that has replayed at least this far.
 */
export class VerdictLsn {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: KeySchema,
  ) {}

  async raise(lsn: bigint): Promise<void> {
    await runScript(this.redis, 'lsn-raise', [this.keys.verdictLsn()], [lsnKeyValue(lsn)]);
  }

  /** null: never recorded, or lost with a Redis that restarted empty (then trust no replica). */
  async read(): Promise<bigint | null> {
    const raw = await this.redis.get(this.keys.verdictLsn());
    return raw && /^[0-9A-F]{16}$/.test(raw) ? BigInt(`0x${raw}`) : null;
  }
}
