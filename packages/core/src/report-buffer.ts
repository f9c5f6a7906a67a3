import { randomBytes } from 'node:crypto';
import type { KeySchema } from './keys';
import { partitionOf } from './package-key';
import { isCluster, type RedisClient } from './redis-client';
import { runScript } from './scripts';

/** One package's buffered reports. */
export interface ReportDelta {
  key: string;
  count: number;
  /** Latest check that carried it, epoch ms (api clock). */
  lastSeenAt: number;
}

/**
 * Packages whose reports add the same count at the same time: one argument of the add script per
 * partition it touches. Keys are distinct across the groups of one call.
 */
export interface ReportGroup {
  count: number;
  lastSeenAt: number;
  keys: readonly string[];
}

/** A check's packages' reports hashes and each package's index into them (space-separated, 1-based). */
export interface CountTarget {
  hashes: string[];
  indexes: string;
}

/** One partition's share of a call: its groups, and which caller's group the last one came from. */
interface PartitionGroups {
  partition: number;
  groups: { count: number; lastSeenAt: number; keys: string[] }[];
  from: number;
}

/** A partition's delta set taken for a flush: applied at most once, under its flush id. */
export interface ReportSet {
  partition: number;
  /** The Redis epoch of the partition's flush ids (new when Redis comes back empty). */
  epoch: string;
  flushId: number;
  /**
   * Random per set (a positive bigint, decimal): a flush that inserts a package with its count
   * from this set stamps the row with it, and the set's UPDATE skips rows so stamped.
   */
  tag: string;
  deltas: ReportDelta[];
}

export interface ReportStats {
  partition: number;
  /** Reports counted in Redis, not yet in PostgreSQL (live plus in-flight). */
  buffered: number;
  /** Age of the oldest of them, ms; null when there is none. */
  oldestAgeMs: number | null;
}

/** Fields per HSCAN page; a page of a hash never blocks Redis for long. */
const SCAN_COUNT = 1000;

/** Parses one delta hash (`n:`/`t:` fields per package, plus `since` and `total`). */
function parseDeltas(flat: readonly string[]): ReportDelta[] {
  const byKey = new Map<string, ReportDelta>();
  const entry = (key: string) => {
    let d = byKey.get(key);
    if (!d) byKey.set(key, (d = { key, count: 0, lastSeenAt: 0 }));
    return d;
  };
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const field = flat[i] as string;
    const value = Number(flat[i + 1]);
    if (!Number.isFinite(value)) continue;
    // HSCAN may return a field twice; values are stable while the set is in flight, so set, never add.
    if (field.startsWith('n:')) entry(field.slice(2)).count = value;
    else if (field.startsWith('t:')) entry(field.slice(2)).lastSeenAt = value;
  }
  return [...byKey.values()].filter((d) => d.count > 0);
}

/**
 * Report counts on the write-behind path: checks add per-partition deltas (reports-add.lua),
 * the flusher takes a partition's deltas as an in-flight set under a flush id
 * (reports-take.lua), applies them in a round transaction guarded by the PostgreSQL ledger,
 * and drops the set after COMMIT (reports-clear.lua).
 */
export class ReportBuffer {
  /** Each partition's reports hash name, built once: the check path names them on every call. */
  private readonly hashes: string[];

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: KeySchema,
    readonly partitions: number,
  ) {
    this.hashes = Array.from({ length: partitions }, (_, p) => keys.partition(p).reports);
  }

  /**
   * Counts one report of each key (distinct keys, one check answered 200) at `now`: one group
   * per partition.
   */
  add(keys: readonly string[], now: number): Promise<void> {
    return this.addGroups([{ count: 1, lastSeenAt: now, keys }]);
  }

  /**
   * Adds counted reports (counts >= 1, e.g. several checks coalesced), each group split by
   * partition in one pass. Callers group by (count, time) themselves, with numbers rather than
   * per-key strings: this runs on the check path, where allocations per package are GC time.
   */
  addGroups(groups: readonly ReportGroup[]): Promise<void> {
    const byPartition: (PartitionGroups | undefined)[] = new Array<PartitionGroups | undefined>(
      this.partitions,
    );
    const touched: PartitionGroups[] = [];
    for (let gi = 0; gi < groups.length; gi++) {
      const g = groups[gi] as ReportGroup;
      for (const key of g.keys) {
        const p = partitionOf(key, this.partitions);
        let part = byPartition[p];
        if (!part) touched.push((byPartition[p] = part = { partition: p, groups: [], from: -1 }));
        // Groups are walked in order, so a partition's share of group gi is always its last one.
        if (part.from !== gi) {
          part.groups.push({ count: g.count, lastSeenAt: g.lastSeenAt, keys: [] });
          part.from = gi;
        }
        (part.groups[part.groups.length - 1] as { keys: string[] }).keys.push(key);
      }
    }
    return this.send(touched);
  }

  /**
   * One script call on a single Redis whatever the partitions, one per touched partition on a
   * Redis Cluster (one slot each), issued together so they pipeline: one round trip either way.
   * A group's keys travel as one space-joined argument, so the client encodes a few arguments
   * per call, not one per package. (Sixteen calls per request cost the api a third more CPU per
   * package in a quick steady run; see README.)
   */
  private async send(parts: readonly PartitionGroups[]): Promise<void> {
    const call = (share: readonly PartitionGroups[]) => {
      // 0: the add form of the script (the read form is ResultCache.readCounting's).
      const args: (string | number)[] = [0, ...share.map((part) => part.groups.length)];
      for (const part of share)
        for (const g of part.groups) args.push(g.count, g.lastSeenAt, g.keys.join(' '));
      return runScript(
        this.redis,
        'reports-add',
        share.map((part) => this.hashes[part.partition] as string),
        args,
      );
    };
    if (parts.length === 0) return;
    if (isCluster(this.redis)) await Promise.all(parts.map((part) => call([part])));
    else await call(parts);
  }

  /**
   * Where one check's packages (distinct keys) are counted by the read form of reports-add.lua:
   * the reports hashes of their partitions, and each key's hash as a 1-based index into them.
   */
  countTarget(keys: readonly string[]): CountTarget {
    const slot = new Array<number>(this.partitions).fill(0);
    const hashes: string[] = [];
    const indexes = new Array<number>(keys.length);
    for (let i = 0; i < keys.length; i++) {
      const p = partitionOf(keys[i] as string, this.partitions);
      if (slot[p] === 0) slot[p] = hashes.push(this.hashes[p] as string);
      indexes[i] = slot[p] as number;
    }
    return { hashes, indexes: indexes.join(' ') };
  }

  /**
   * The partition's delta set to flush, or null when there is nothing: the in-flight set if
   * one exists (a crashed or concurrent flusher's), else the live deltas, moved atomically.
   */
  async take(partition: number): Promise<ReportSet | null> {
    const k = this.keys.partition(partition);
    const tag = (await runScript(
      this.redis,
      'reports-take',
      [k.reports, k.reportsInflight, k.reportsFlushId, k.reportsInflightId],
      [randomBytes(8).toString('hex'), (randomBytes(8).readBigUInt64BE() >> 1n).toString()],
    )) as string | null;
    if (!tag) return null;
    const [epoch = '', seq = '0', setTag = '0'] = tag.split(':');
    return {
      partition,
      epoch,
      flushId: Number(seq),
      tag: setTag,
      deltas: await this.readInflight(partition),
    };
  }

  /**
   * The in-flight set's deltas. Nothing writes to it while it exists, so a full HSCAN sees every
   * field; if it is cleared mid-scan (another flusher committed it), the partial set is refused
   * by the ledger, since that flusher's COMMIT came first.
   */
  private async readInflight(partition: number): Promise<ReportDelta[]> {
    const key = this.keys.partition(partition).reportsInflight;
    const flat: string[] = [];
    let cursor = '0';
    do {
      const [next, page] = await this.redis.hscan(key, cursor, 'COUNT', SCAN_COUNT);
      cursor = next;
      flat.push(...page);
    } while (cursor !== '0');
    return parseDeltas(flat);
  }

  /** After COMMIT: drops the in-flight set if it is still the one with this flush id. */
  async clear(set: Pick<ReportSet, 'partition' | 'epoch' | 'flushId' | 'tag'>): Promise<boolean> {
    const k = this.keys.partition(set.partition);
    const dropped = await runScript(
      this.redis,
      'reports-clear',
      [k.reportsInflight, k.reportsInflightId],
      [`${set.epoch}:${set.flushId}:${set.tag}`],
    );
    return dropped === 1;
  }

  /** Deltas of one package still in Redis (live plus in-flight), for the admin package view. */
  async pendingFor(key: string): Promise<{ count: number; lastSeenAt: number | null }> {
    const k = this.keys.partition(partitionOf(key, this.partitions));
    const [live, inflight] = await Promise.all([
      this.redis.hmget(k.reports, `n:${key}`, `t:${key}`),
      this.redis.hmget(k.reportsInflight, `n:${key}`, `t:${key}`),
    ]);
    let count = 0;
    let lastSeenAt: number | null = null;
    for (const [n, t] of [live, inflight]) {
      count += Number(n ?? 0) || 0;
      if (t !== null && t !== undefined && Number.isFinite(Number(t)))
        lastSeenAt = Math.max(lastSeenAt ?? 0, Number(t));
    }
    return { count, lastSeenAt };
  }

  async stats(partitions: readonly number[], now = Date.now()): Promise<ReportStats[]> {
    return Promise.all(
      partitions.map(async (p) => {
        const k = this.keys.partition(p);
        const [live, inflight] = await Promise.all([
          this.redis.hmget(k.reports, 'total', 'since'),
          this.redis.hmget(k.reportsInflight, 'total', 'since'),
        ]);
        let buffered = 0;
        let since: number | null = null;
        for (const [total, at] of [live, inflight]) {
          buffered += Number(total ?? 0) || 0;
          if (at !== null && at !== undefined && Number.isFinite(Number(at)))
            since = Math.min(since ?? Number(at), Number(at));
        }
        return {
          partition: p,
          buffered,
          oldestAgeMs: since === null || buffered === 0 ? null : Math.max(0, now - since),
        };
      }),
    );
  }
}
