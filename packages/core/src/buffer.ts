import { BufferFullError } from './errors';
import { MAX_BUFFER_PARTITIONS, type KeySchema } from './keys';
import { partitionOf } from './package-key';
import type { RedisClient } from './redis-client';
import { runScript } from './scripts';

/**
 * Most entries one buffer-read script returns. A script blocks every other Redis client
 * while it runs; the benchmark measured 10–34 ms for a 10,000-entry read, which every API
 * command behind it waited out. 2,000 keeps one call to a few milliseconds, and the extra
 * round trips (5 instead of 1 per 10k) cost the flusher well under a millisecond each.
 */
export const READ_CHUNK = 2000;

/** Most dead letters one redrive script moves back, for the same reason. */
export const REDRIVE_CHUNK = 500;

/** What the buffer keeps for each pending package (kept small: millions may wait). */
export interface BufferPayload {
  /** First time a device reported it, epoch ms; becomes packages.first_seen_at. */
  t: number;
}

export interface BufferEntry {
  key: string;
  /** The partition seq at first buffering; the compare-and-delete token. */
  score: number;
  payload: BufferPayload;
}

export interface DeadLetter {
  partition: number;
  key: string;
  payload: BufferPayload;
  error: { code: string; message: string };
  deadAt: number;
}

export interface PartitionStats {
  partition: number;
  depth: number;
  oldestPendingAgeMs: number | null;
  deadLetters: number;
}

export function encodePayload(payload: BufferPayload): string {
  return JSON.stringify({ t: payload.t });
}

/** The largest |epoch ms| a JavaScript Date holds; beyond it `new Date(t)` is Invalid Date. */
const MAX_DATE_MS = 8.64e15;

/**
 * Tolerates a missing or damaged payload: the entry is still flushed, stamped now. A time no
 * Date can hold counts as damaged: it would throw in the COPY (not a PostgreSQL data error,
 * so it would stall every flush round instead of being isolated).
 */
export function decodePayload(raw: string, now = Date.now()): BufferPayload {
  return { t: decodePayloadTime(raw) ?? now };
}

/** The payload's time, or null when it is missing or damaged. */
function decodePayloadTime(raw: string): number | null {
  try {
    const parsed = JSON.parse(raw) as Partial<BufferPayload>;
    if (typeof parsed.t === 'number' && Math.abs(parsed.t) <= MAX_DATE_MS) return parsed.t;
  } catch {
    // fall through
  }
  return null;
}

/**
 * The Redis write-behind buffer: API side (add, isPending) and flusher side (read,
 * confirm, dead-letter), all through the Lua scripts in ../lua.
 */
export class RedisBuffer {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: KeySchema,
    readonly partitions: number,
    private readonly maxDepth: number,
  ) {}

  partitionOf(key: string): number {
    return partitionOf(key, this.partitions);
  }

  /** Each partition's share of MAX_BUFFER_DEPTH. */
  get partitionCapacity(): number {
    return Math.max(1, Math.ceil(this.maxDepth / this.partitions));
  }

  /**
   * Buffers packages not already pending, one script call per touched partition
   * (issued together, so they are pipelined on the connection). Returns, per input,
   * whether it was already pending. A full partition writes nothing and makes the
   * whole call fail with BufferFullError; other partitions' writes stay valid, and a
   * retry is idempotent.
   */
  async add(entries: readonly { key: string; payload: BufferPayload }[]): Promise<boolean[]> {
    const groups = new Map<number, number[]>();
    entries.forEach((e, i) => {
      const p = this.partitionOf(e.key);
      let g = groups.get(p);
      if (!g) groups.set(p, (g = []));
      g.push(i);
    });
    const already = new Array<boolean>(entries.length).fill(false);
    const full: number[] = [];
    await Promise.all(
      [...groups].map(async ([p, idx]) => {
        const k = this.keys.partition(p);
        const args: (string | number)[] = [this.partitionCapacity];
        for (const i of idx) {
          const e = entries[i] as { key: string; payload: BufferPayload };
          args.push(e.key, encodePayload(e.payload));
        }
        const reply = (await runScript(
          this.redis,
          'buffer-add',
          [k.seq, k.pending, k.data],
          args,
        )) as number[];
        if (reply[0] === -1) {
          full.push(p);
          return;
        }
        idx.forEach((i, j) => {
          already[i] = reply[j + 1] === 1;
        });
      }),
    );
    if (full.length > 0) throw new BufferFullError(full.sort((a, b) => a - b));
    return already;
  }

  /**
   * When each pending key was first buffered (its payload's time), read-only; keys not pending,
   * and pending ones whose payload is damaged or gone meanwhile, are absent. Native commands, not
   * a script: one ZMSCORE per touched partition, then one HMGET per partition with pending keys,
   * each step issued together so it pipelines. A script call costs Redis about ten times more
   * per request (bench/src/redis-cost.ts); the two steps need no atomicity, since an entry
   * confirmed between them only reads as not pending, and the caller then asks PostgreSQL.
   */
  async pendingSince(keys: readonly string[]): Promise<Map<string, number>> {
    const groups = new Map<number, string[]>();
    for (const key of keys) {
      const p = this.partitionOf(key);
      let g = groups.get(p);
      if (!g) groups.set(p, (g = []));
      g.push(key);
    }
    const parts = [...groups];
    const scores = await Promise.all(
      parts.map(([p, group]) => this.redis.zmscore(this.keys.partition(p).pending, ...group)),
    );
    const pending = parts
      .map(([p, group], i) => [p, group.filter((_, j) => scores[i]?.[j] != null)] as const)
      .filter(([, group]) => group.length > 0);
    const payloads = await Promise.all(
      pending.map(([p, group]) => this.redis.hmget(this.keys.partition(p).data, ...group)),
    );
    const out = new Map<string, number>();
    pending.forEach(([, group], i) => {
      group.forEach((key, j) => {
        const raw = payloads[i]?.[j];
        const t = typeof raw === 'string' ? decodePayloadTime(raw) : null;
        if (t !== null) out.set(key, t);
      });
    });
    return out;
  }

  /** Whether each key is pending (read-only). */
  async isPending(keys: readonly string[]): Promise<boolean[]> {
    return Promise.all(
      keys.map(async (key) => {
        const score = await this.redis.zscore(this.keys.partition(this.partitionOf(key)).pending, key);
        return score !== null;
      }),
    );
  }

  /** The partition's seq now: entries buffered later get higher scores. */
  async snapshotSeq(partition: number): Promise<number> {
    const v = await this.redis.get(this.keys.partition(partition).seq);
    return v === null ? 0 : Number(v);
  }

  /**
   * Up to `limit` entries with afterScore < score <= maxScore, in score order, read in
   * script calls of at most READ_CHUNK entries (each call is one consistent snapshot of
   * the entries it returns; together they are in order with no gap, since scores only grow).
   */
  async read(
    partition: number,
    afterScore: number | null,
    maxScore: number,
    limit: number,
  ): Promise<BufferEntry[]> {
    const out: BufferEntry[] = [];
    let after = afterScore;
    while (out.length < limit) {
      const want = Math.min(READ_CHUNK, limit - out.length);
      const chunk = await this.readChunk(partition, after, maxScore, want);
      out.push(...chunk);
      if (chunk.length < want) break;
      after = (chunk[chunk.length - 1] as BufferEntry).score;
    }
    return out;
  }

  private async readChunk(partition: number, afterScore: number | null, maxScore: number, limit: number) {
    const k = this.keys.partition(partition);
    const flat = (await runScript(
      this.redis,
      'buffer-read',
      [k.pending, k.data],
      [afterScore === null ? '-inf' : afterScore, maxScore, limit],
    )) as string[];
    const now = Date.now();
    const out: BufferEntry[] = [];
    for (let i = 0; i < flat.length; i += 3) {
      out.push({
        key: flat[i] as string,
        score: Number(flat[i + 1]),
        payload: decodePayload(flat[i + 2] as string, now),
      });
    }
    return out;
  }

  /** Compare-and-delete of flushed entries; returns how many were removed. */
  async confirm(partition: number, entries: readonly BufferEntry[]): Promise<number> {
    if (entries.length === 0) return 0;
    const k = this.keys.partition(partition);
    const args: (string | number)[] = [];
    for (const e of entries) args.push(e.key, e.score);
    return (await runScript(this.redis, 'buffer-confirm', [k.pending, k.data], args)) as number;
  }

  /** Moves entries PostgreSQL refused to the partition's dead-letter hash. */
  async deadLetter(
    partition: number,
    entries: readonly BufferEntry[],
    error: { code: string; message: string },
  ) {
    if (entries.length === 0) return 0;
    const k = this.keys.partition(partition);
    const deadAt = Date.now();
    const args: (string | number)[] = [];
    for (const e of entries) args.push(e.key, e.score, JSON.stringify({ payload: e.payload, error, deadAt }));
    return (await runScript(this.redis, 'buffer-dead-letter', [k.pending, k.data, k.dead], args)) as number;
  }

  /**
   * Dead letters of the given partitions, at most `limit` per partition. A value that is not
   * the JSON deadLetter() writes is listed, not thrown on (one damaged value must not hide
   * every other dead letter): error code `corrupt_dead_letter`, stamped now, so that a redrive
   * re-buffers the key with the time it was found.
   */
  async deadLetters(partitions: readonly number[], limit = 1000, now = Date.now()): Promise<DeadLetter[]> {
    const out: DeadLetter[] = [];
    const read = (partition: number, key: string, raw: string): DeadLetter => {
      try {
        const v = JSON.parse(raw) as Partial<Omit<DeadLetter, 'partition' | 'key'>> | null;
        const t = v?.payload?.t;
        if (
          typeof t === 'number' &&
          Math.abs(t) <= MAX_DATE_MS &&
          typeof v?.error?.code === 'string' &&
          typeof v.error.message === 'string' &&
          typeof v.deadAt === 'number' &&
          Math.abs(v.deadAt) <= MAX_DATE_MS
        ) {
          return {
            partition,
            key,
            payload: { t },
            error: { code: v.error.code, message: v.error.message },
            deadAt: v.deadAt,
          };
        }
      } catch {
        // falls through to the corrupt entry below
      }
      const message =
        'stored dead letter is unreadable; a redrive re-buffers the key stamped with the time it was listed';
      return {
        partition,
        key,
        payload: { t: now },
        error: { code: 'corrupt_dead_letter', message },
        deadAt: now,
      };
    };
    for (const p of partitions) {
      const dead = this.keys.partition(p).dead;
      let cursor = '0';
      let taken = 0;
      do {
        const [next, flat] = await this.redis.hscan(dead, cursor, 'COUNT', 200);
        cursor = next;
        for (let i = 0; i < flat.length && taken < limit; i += 2, taken++) {
          out.push(read(p, flat[i] as string, flat[i + 1] as string));
        }
      } while (cursor !== '0' && taken < limit);
    }
    return out;
  }

  /** Puts dead letters back into the buffer with their original first-seen time. */
  async redrive(letters: readonly Pick<DeadLetter, 'partition' | 'key' | 'payload'>[]): Promise<number> {
    const byPartition = new Map<number, (string | number)[]>();
    for (const l of letters) {
      let args = byPartition.get(l.partition);
      if (!args) byPartition.set(l.partition, (args = []));
      args.push(l.key, encodePayload(l.payload));
    }
    let moved = 0;
    for (const [p, args] of byPartition) {
      const k = this.keys.partition(p);
      // A whole bad deploy can dead-letter millions: one script over all of them would block Redis.
      for (let i = 0; i < args.length; i += 2 * REDRIVE_CHUNK) {
        const chunk = args.slice(i, i + 2 * REDRIVE_CHUNK);
        moved += (await runScript(
          this.redis,
          'buffer-redrive',
          [k.seq, k.pending, k.data, k.dead],
          chunk,
        )) as number;
      }
    }
    return moved;
  }

  /**
   * Partitions beyond the configured count that still hold pending entries or dead letters
   * (left by lowering BUFFER_PARTITIONS); the flusher drains them too, and a partition left
   * with only dead letters stays listable and redrivable. One EXISTS per possible partition:
   * both keys share the partition's slot, so this works on a cluster as it is.
   */
  async strayPartitions(): Promise<number[]> {
    const candidates = Array.from(
      { length: Math.max(0, MAX_BUFFER_PARTITIONS - this.partitions) },
      (_, i) => this.partitions + i,
    );
    const held = await Promise.all(
      candidates.map((p) => {
        const k = this.keys.partition(p);
        // Report deltas too: a partition left with only those must still be flushed.
        return this.redis.exists(k.pending, k.dead, k.reports, k.reportsInflight);
      }),
    );
    return candidates.filter((_, i) => (held[i] ?? 0) > 0);
  }

  async stats(partitions: readonly number[], now = Date.now()): Promise<PartitionStats[]> {
    return Promise.all(
      partitions.map(async (p) => {
        const k = this.keys.partition(p);
        const [depth, oldest, deadLetters] = await Promise.all([
          this.redis.zcard(k.pending),
          this.redis.zrange(k.pending, '0', '0'),
          this.redis.hlen(k.dead),
        ]);
        let oldestPendingAgeMs: number | null = null;
        if (oldest[0] !== undefined) {
          const raw = await this.redis.hget(k.data, oldest[0]);
          oldestPendingAgeMs = raw === null ? null : Math.max(0, now - decodePayload(raw, now).t);
        }
        return { partition: p, depth, oldestPendingAgeMs, deadLetters };
      }),
    );
  }
}
