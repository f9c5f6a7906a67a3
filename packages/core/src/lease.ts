import { randomBytes } from 'node:crypto';
import type { KeySchema } from './keys';
import type { RedisClient } from './redis-client';
import { runScript } from './scripts';

/**
 * A partition's flush lease: `SET NX PX` with a random token; renewed and released only
 * by compare-on-token scripts, so an expired holder can never extend or delete a lease
 * that another flusher has since taken. The lease only saves duplicate work; correctness
 * rests on PostgreSQL idempotency and compare-and-delete.
 */
export interface PartitionLease {
  readonly partition: number;
  renew(): Promise<boolean>;
  release(): Promise<boolean>;
}

export class Lease implements PartitionLease {
  private constructor(
    private readonly redis: RedisClient,
    readonly key: string,
    readonly partition: number,
    readonly token: string,
    private readonly ttlMs: number,
  ) {}

  static async acquire(
    redis: RedisClient,
    keys: KeySchema,
    partition: number,
    ttlMs: number,
    token = randomBytes(16).toString('hex'),
  ): Promise<Lease | null> {
    const key = keys.partition(partition).lock;
    const ok = await redis.set(key, token, 'PX', ttlMs, 'NX');
    return ok === 'OK' ? new Lease(redis, key, partition, token, ttlMs) : null;
  }

  /** True if still held and extended by a full TTL. */
  async renew(): Promise<boolean> {
    return (await runScript(this.redis, 'lease-renew', [this.key], [this.token, this.ttlMs])) === 1;
  }

  /** True if it was still held and is now deleted. */
  async release(): Promise<boolean> {
    return (await runScript(this.redis, 'lease-release', [this.key], [this.token])) === 1;
  }
}
