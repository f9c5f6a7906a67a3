// What is still in Redis for the flusher: the benchmark waits on these between phases.
import { configDefaults, type KeySchema } from '@safepkg/core';
import type { Redis } from 'ioredis';

/** Entries pending over the configured partitions (the apps run with the default count). */
export async function bufferDepth(
  redis: Redis,
  keys: KeySchema,
  partitions = configDefaults().bufferPartitions,
): Promise<number> {
  const pipeline = redis.pipeline();
  for (let p = 0; p < partitions; p++) pipeline.zcard(keys.partition(p).pending);
  const replies = (await pipeline.exec()) ?? [];
  return replies.reduce((a, [, n]) => a + Number(n), 0);
}

/** Report keys (live or in flight) left over the partitions. */
export async function reportKeys(redis: Redis, keys: KeySchema, partitions: number): Promise<number> {
  let left = 0;
  for (let p = 0; p < partitions; p++) {
    const k = keys.partition(p);
    left += await redis.exists(k.reports, k.reportsInflight);
  }
  return left;
}
