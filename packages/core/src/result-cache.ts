import type { KeySchema } from './keys';
import { isCluster, type RedisClient } from './redis-client';
import { runScript } from './scripts';
import type { StoredPackage, Verdict, VerdictSource } from './store';

/** What the cache keeps of a stored package: its status and the rev that guards it. */
export interface CachedStatus {
  rev: number;
  verdict: Verdict | null;
  source: VerdictSource | null;
  threatIndex: number | null;
  firstSeenAt: number;
}

/** `rev` first: the cache-fill script reads it with a prefix match instead of a JSON parse. */
export function encodeCached(s: CachedStatus): string {
  return JSON.stringify({ rev: s.rev, v: s.verdict, s: s.source, x: s.threatIndex, f: s.firstSeenAt });
}

export function decodeCached(raw: string): CachedStatus | null {
  try {
    const o = JSON.parse(raw) as { rev?: unknown; v?: unknown; s?: unknown; x?: unknown; f?: unknown };
    if (typeof o.rev !== 'number' || typeof o.f !== 'number') return null;
    return {
      rev: o.rev,
      verdict: (o.v ?? null) as Verdict | null,
      source: (o.s ?? null) as VerdictSource | null,
      threatIndex: typeof o.x === 'number' ? o.x : null,
      firstSeenAt: o.f,
    };
  } catch {
    return null;
  }
}

export function statusOf(p: StoredPackage): CachedStatus {
  return {
    rev: p.rev,
    verdict: p.verdict,
    source: p.source,
    threatIndex: p.threatIndex,
    firstSeenAt: p.firstSeenAt.getTime(),
  };
}

/**
 * The read cache of packages found in PostgreSQL. Fills go through the rev-guarded
 * cache-fill script only, so no interleaving of readers and evaluations can put an
 * older verdict over a newer one. Packages not in PostgreSQL are never cached.
 */
export class ResultCache {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: KeySchema,
    private readonly ttlS: number,
  ) {}

  async getMany(packageKeys: readonly string[]): Promise<Map<string, CachedStatus>> {
    const out = new Map<string, CachedStatus>();
    if (packageKeys.length === 0) return out;
    const cacheKeys = packageKeys.map((k) => this.keys.cache(k));
    // MGET spans slots, which a cluster refuses: there, per-key GETs are pipelined instead.
    const values = isCluster(this.redis)
      ? await Promise.all(cacheKeys.map((k) => this.redis.get(k)))
      : await this.redis.mget(...cacheKeys);
    values.forEach((raw, i) => {
      const decoded = raw === null ? null : decodeCached(raw);
      if (decoded) out.set(packageKeys[i] as string, decoded);
    });
    return out;
  }

  /** Writes each entry unless the cache already holds the same or a newer rev. Returns how many were written. */
  async fill(entries: readonly { key: string; status: CachedStatus }[]): Promise<number> {
    if (entries.length === 0) return 0;
    if (isCluster(this.redis)) {
      const written = await Promise.all(
        entries.map(
          (e) =>
            runScript(
              this.redis,
              'cache-fill',
              [this.keys.cache(e.key)],
              [this.ttlS, encodeCached(e.status)],
            ) as Promise<number>,
        ),
      );
      return written.reduce((a, b) => a + b, 0);
    }
    return (await runScript(
      this.redis,
      'cache-fill',
      entries.map((e) => this.keys.cache(e.key)),
      [this.ttlS, ...entries.map((e) => encodeCached(e.status))],
    )) as number;
  }
}
