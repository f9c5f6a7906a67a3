import type { KeySchema } from './keys';
import { partitionOf } from './package-key';
import type { RedisClient } from './redis-client';
import { runScript } from './scripts';

/**
 * The packages of `packageKeys` that Redis still holds something for: a pending buffer entry,
 * or report deltas live or in flight (retention-held.lua). The retention sweep keeps their rows:
 * a device reported them lately, and their deltas still have to be applied to the row. One
 * script call per touched partition, issued together (pipelined on one connection).
 */
export async function heldInRedis(
  redis: RedisClient,
  keys: KeySchema,
  partitions: number,
  packageKeys: readonly string[],
): Promise<Set<string>> {
  const groups = new Map<number, string[]>();
  for (const key of packageKeys) {
    const p = partitionOf(key, partitions);
    let g = groups.get(p);
    if (!g) groups.set(p, (g = []));
    g.push(key);
  }
  const held = new Set<string>();
  await Promise.all(
    [...groups].map(async ([p, group]) => {
      const k = keys.partition(p);
      const flags = (await runScript(
        redis,
        'retention-held',
        [k.pending, k.reports, k.reportsInflight],
        group,
      )) as number[];
      group.forEach((key, i) => {
        if (flags[i] === 1) held.add(key);
      });
    }),
  );
  return held;
}
