/**
 * The Redis key schema: every key safepkg touches is built here and nowhere else.
 *
 * All keys of one buffer partition share the hash tag `{<prefix>:b<p>}`, so a Lua
 * script over a partition stays in one Redis Cluster slot. BullMQ gets the prefix
 * `{<prefix>:q}` so that all of its keys share one slot too.
 */
export interface PartitionKeys {
  /** INCR counter of the partition (string). */
  seq: string;
  /** packageKey → seq at first buffering (zset). */
  pending: string;
  /** packageKey → payload JSON (hash). */
  data: string;
  /** flush lease: random token with PX (string). */
  lock: string;
  /** packageKey → payload + error of rows PostgreSQL refused (hash). */
  dead: string;
  /** Report deltas checks are adding to (hash): `n:<packageKey>` → count, `t:<packageKey>` → last seen epoch ms, `since`, `total`. */
  reports: string;
  /** The delta set being flushed, same fields (hash); renamed from `reports` by reports-take.lua. */
  reportsInflight: string;
  /** The partition's flush ids (hash): `epoch` (random, set once), `seq` (one per delta set taken, only grows). */
  reportsFlushId: string;
  /** `<epoch>:<seq>` of the in-flight set (string); exists exactly while `reportsInflight` is being flushed. */
  reportsInflightId: string;
}

/**
 * The most buffer partitions there can be (BUFFER_PARTITIONS is capped at it). Bounding the
 * partition numbers lets the flusher find partitions left over from a larger count with one
 * EXISTS per possible partition, instead of SCANning a keyspace of millions of cache keys.
 */
export const MAX_BUFFER_PARTITIONS = 1024;

export class KeySchema {
  constructor(readonly prefix: string) {}

  partitionTag(partition: number): string {
    return `{${this.prefix}:b${partition}}`;
  }

  partition(partition: number): PartitionKeys {
    const tag = this.partitionTag(partition);
    return {
      seq: `${tag}:seq`,
      pending: `${tag}:pending`,
      data: `${tag}:data`,
      lock: `${tag}:lock`,
      dead: `${tag}:dead`,
      reports: `${tag}:reports`,
      reportsInflight: `${tag}:reports:inflight`,
      reportsFlushId: `${tag}:reports:id`,
      reportsInflightId: `${tag}:reports:inflight-id`,
    };
  }

  cache(packageKey: string): string {
    return `${this.cachePrefix()}${packageKey}`;
  }

  /** What every cache key starts with: the read-and-count script cuts it off to get the packageKey. */
  cachePrefix(): string {
    return `${this.prefix}:c:`;
  }

  /**
   * A signing certificate's current verdict (result-cache.ts), or a rev-0 entry saying it has
   * none, so a hot signature is not looked up in PostgreSQL on every check.
   */
  signer(signature: string): string {
    return `${this.prefix}:signer:${signature}`;
  }

  /** BullMQ's `prefix` option. */
  queuePrefix(): string {
    return `{${this.prefix}:q}`;
  }

  /** Prefix of the shared rate limiter's counters (rate-limiter-flexible appends the client id). */
  rateLimitPrefix(): string {
    return `${this.prefix}:rl`;
  }

  /**
   * The WAL position (16 hex digits) of the latest verdict commit any pod made: a replica
   * that has not replayed that far must not answer lookups (read-pool.ts). No TTL.
   */
  verdictLsn(): string {
    return `${this.prefix}:verdict-lsn`;
  }

  /** The retention sweep's lease: random token with PX (string); one sweeper at a time. */
  retentionLock(): string {
    return `${this.prefix}:retention:lock`;
  }

  /**
   * Where the retention sweep's pass has got to (string `<first_seen_at epoch µs>:<id>`), so a
   * sweep cut short (stop, error, another replica taking over) resumes instead of restarting.
   */
  retentionCursor(): string {
    return `${this.prefix}:retention:cursor`;
  }

  /** Where the flusher records its last successful flush (for /v1/admin/buffer). */
  flusherStatus(): string {
    return `${this.prefix}:flusher:status`;
  }
}

export const FLUSH_QUEUE_NAME = 'flush';
export const FLUSH_SCHEDULER_ID = 'flush-tick';
