import type { KeySchema } from './keys';
import type { CountTarget } from './report-buffer';
import { isCluster, type RedisClient } from './redis-client';
import { runScript } from './scripts';
import type { StoredSigner } from './signer-store';
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
 * What the cache keeps of a signing certificate. `rev` 0 with no verdict: PostgreSQL had no
 * verdict on it when read (a negative entry; any real verdict has rev >= 1 and replaces it).
 */
export interface CachedSigner {
  rev: number;
  verdict: Verdict | null;
  source: VerdictSource | null;
  threatIndex: number | null;
}

/** `rev` first, as encodeCached, so the same cache-fill script guards both. */
export function encodeSigner(s: CachedSigner): string {
  return JSON.stringify({ rev: s.rev, v: s.verdict, s: s.source, x: s.threatIndex });
}

export function decodeSigner(raw: string): CachedSigner | null {
  try {
    const o = JSON.parse(raw) as { rev?: unknown; v?: unknown; s?: unknown; x?: unknown };
    if (typeof o.rev !== 'number') return null;
    const verdict = (o.v ?? null) as Verdict | null;
    const source = (o.s ?? null) as VerdictSource | null;
    const threatIndex = typeof o.x === 'number' ? o.x : null;
    // A half entry (verdict without source or score) is treated as a miss, never as a verdict.
    if ((verdict === null) !== (source === null) || (verdict === null) !== (threatIndex === null))
      return null;
    return { rev: o.rev, verdict, source, threatIndex };
  } catch {
    return null;
  }
}

/** A signer as read from PostgreSQL; `undefined` (no row) becomes the rev-0 negative entry. */
export function signerStatusOf(s: StoredSigner | undefined): CachedSigner {
  return s
    ? { rev: s.rev, verdict: s.verdict, source: s.source, threatIndex: s.threatIndex }
    : { rev: 0, verdict: null, source: null, threatIndex: null };
}

export interface CacheRead {
  packages: Map<string, CachedStatus>;
  /** By signature; a signature absent here was a miss. */
  signers: Map<string, CachedSigner>;
}

/** Decoded cache values kept per process, at most this many of each kind (then started afresh). */
export const DECODED_MEMO_ENTRIES = 50_000;

/**
 * Decodes of cache values by their exact text: the hot packages' entries come back on every
 * check, and a Map lookup of the text costs under half a JSON.parse (bench: ~180 vs ~390 ns).
 * A pure function's memo, so it can never answer stale: a changed entry is a different text.
 * Bounded by starting afresh when full, which keeps the hot set within a moment.
 */
class DecodeMemo<T> {
  private readonly byText = new Map<string, T | null>();

  constructor(private readonly decode: (raw: string) => T | null) {}

  get(raw: string): T | null {
    let v = this.byText.get(raw);
    if (v === undefined) {
      v = this.decode(raw);
      if (this.byText.size >= DECODED_MEMO_ENTRIES) this.byText.clear();
      this.byText.set(raw, v);
    }
    return v;
  }
}

/**
 * The read cache of packages found in PostgreSQL. Fills go through the rev-guarded
 * cache-fill script only, so no interleaving of readers and evaluations can put an
 * older verdict over a newer one. Packages not in PostgreSQL are never cached.
 */
export class ResultCache {
  private readonly packageMemo = new DecodeMemo(decodeCached);
  private readonly signerMemo = new DecodeMemo(decodeSigner);

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: KeySchema,
    private readonly ttlS: number,
  ) {}

  async getMany(packageKeys: readonly string[]): Promise<Map<string, CachedStatus>> {
    return (await this.read(packageKeys, [])).packages;
  }

  /**
   * Packages and their signers in one MGET (a check's packages mostly share a few signers, so
   * this adds one key per distinct signature, not one per package).
   */
  async read(packageKeys: readonly string[], signatures: readonly string[]): Promise<CacheRead> {
    const out: CacheRead = { packages: new Map(), signers: new Map() };
    if (packageKeys.length === 0 && signatures.length === 0) return out;
    const cacheKeys = this.cacheKeys(packageKeys, signatures);
    // MGET spans slots, which a cluster refuses: there, per-key GETs are pipelined instead.
    const values = isCluster(this.redis)
      ? await Promise.all(cacheKeys.map((k) => this.redis.get(k)))
      : await this.redis.mget(...cacheKeys);
    return this.decodeRead(values, packageKeys, signatures);
  }

  /**
   * As `read`, and in the same call (a single Redis only: it spans slots) counts one report of
   * each package at `now` if every package is cached, the check path's whole answer then being
   * sure. `counted` false: nothing was written, and the caller counts once its answer is sure.
   * A rejection leaves it unknown whether the check was counted (a reply lost or timed out after
   * Redis ran the script), which the caller must not answer 200 on.
   */
  async readCounting(
    packageKeys: readonly string[],
    signatures: readonly string[],
    target: CountTarget,
    now: number,
  ): Promise<CacheRead & { counted: boolean }> {
    const cacheKeys = this.cacheKeys(packageKeys, signatures);
    // r = 0 would be the script's add form.
    if (cacheKeys.length === 0) return { packages: new Map(), signers: new Map(), counted: false };
    const reply = (await runScript(
      this.redis,
      'reports-add',
      [...cacheKeys, ...target.hashes],
      [cacheKeys.length, packageKeys.length, now, this.keys.cachePrefix().length, target.indexes],
    )) as unknown[];
    const counted = reply[cacheKeys.length] === 1;
    reply.length = cacheKeys.length;
    return { ...this.decodeRead(reply as (string | null)[], packageKeys, signatures), counted };
  }

  /**
   * An MGET's values: the packages' entries, then the signers'; undecodable ones are misses.
   * The decoded objects are shared between checks (`DecodeMemo`): read them, never change them.
   */
  private decodeRead(
    values: readonly (string | null)[],
    packageKeys: readonly string[],
    signatures: readonly string[],
  ): CacheRead {
    const out: CacheRead = { packages: new Map(), signers: new Map() };
    values.forEach((raw, i) => {
      if (raw === null) return;
      if (i < packageKeys.length) {
        const decoded = this.packageMemo.get(raw);
        if (decoded) out.packages.set(packageKeys[i] as string, decoded);
      } else {
        const decoded = this.signerMemo.get(raw);
        if (decoded) out.signers.set(signatures[i - packageKeys.length] as string, decoded);
      }
    });
    return out;
  }

  private cacheKeys(packageKeys: readonly string[], signatures: readonly string[]): string[] {
    return [...packageKeys.map((k) => this.keys.cache(k)), ...signatures.map((s) => this.keys.signer(s))];
  }

  /**
   * Writes each entry unless the cache already holds the same or a newer rev (packages and
   * signers alike, in one script call). Returns how many were written.
   */
  async fill(
    entries: readonly { key: string; status: CachedStatus }[],
    signers: readonly { signature: string; status: CachedSigner }[] = [],
  ): Promise<number> {
    const writes = [
      ...entries.map((e) => ({ key: this.keys.cache(e.key), value: encodeCached(e.status) })),
      ...signers.map((e) => ({ key: this.keys.signer(e.signature), value: encodeSigner(e.status) })),
    ];
    if (writes.length === 0) return 0;
    if (isCluster(this.redis)) {
      const written = await Promise.all(
        writes.map(
          (w) => runScript(this.redis, 'cache-fill', [w.key], [this.ttlS, w.value]) as Promise<number>,
        ),
      );
      return written.reduce((a, b) => a + b, 0);
    }
    return (await runScript(
      this.redis,
      'cache-fill',
      writes.map((w) => w.key),
      [this.ttlS, ...writes.map((w) => w.value)],
    )) as number;
  }
}
