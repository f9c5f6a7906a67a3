import { z } from 'zod';
import { ConfigError } from './errors';
import { MAX_BUFFER_PARTITIONS } from './keys';

export type WriteMode = 'buffered' | 'direct';
export type PgPooler = 'none' | 'transaction';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface Config {
  databaseUrl: string;
  /** Streaming replicas the api's lookups go to; empty = every lookup on databaseUrl. */
  databaseReadUrls: string[];
  /** A replica further behind than this (replay lag) is left for the primary. */
  replicaMaxLagMs: number;
  /** How often each api pod asks each replica for its replay position and lag. */
  replicaPollIntervalMs: number;
  /**
   * `transaction`: the database URLs point at a transaction-mode pooler (pgbouncer), so no
   * named prepared statements and no session settings in the startup packet.
   */
  pgPooler: PgPooler;
  redisUrl: string;
  /** host:port list; when set, Redis Cluster is used instead of redisUrl. */
  redisClusterNodes: { host: string; port: number }[] | null;
  port: number;
  flusherPort: number;
  /** null disables the admin routes (they answer 404), never leaves them open. */
  adminToken: string | null;
  keyPrefix: string;
  bufferPartitions: number;
  flushIntervalMs: number;
  flushBatchSize: number;
  lockTtlMs: number;
  cacheTtlS: number;
  /**
   * A cache miss that is pending in the buffer and was first buffered less than this long ago is
   * answered pending without a PostgreSQL lookup; 0 turns it off. Capped at half the cache TTL
   * where it is used ({@link pendingAnswerWindowMs}): a verdict on such a package is then always
   * still in the cache (README, "Pending answers from the buffer").
   */
  pendingAnswerMaxAgeMs: number;
  maxBufferDepth: number;
  writeMode: WriteMode;
  logLevel: LogLevel;
  /** PostgreSQL statement_timeout for every pooled connection. */
  pgStatementTimeoutMs: number;
  pgPoolSize: number;
  /** Upper bound of the flusher's retry backoff after a failed tick. */
  flushBackoffMaxMs: number;
  /** Seconds a client is told to wait on 503. */
  retryAfterS: number;
  /** How long an analysis claim is held before the package is handed out again. */
  analysisClaimTtlMs: number;
  /** Verdict changes older than this are deleted from the feed by the flusher (hourly). */
  feedRetentionDays: number;
  /** Requests one client (API key, else IP) may make per window; 0 turns rate limiting off. */
  rateLimitPoints: number;
  rateLimitWindowS: number;
  /**
   * Requests with an API key one IP may make per window, whatever keys it rotates through;
   * larger than rateLimitPoints because carrier NAT puts many devices behind one IP. 0 = no cap.
   */
  rateLimitIpPoints: number;
  /** Proxies in front of the API whose X-Forwarded-For is trusted for the client IP. */
  trustProxyHops: number;
  /**
   * How long a device may keep each result (`cacheTtlS`), by answered status. Unknown (pending
   * or never analysed) is short so the device asks again soon after analysis; a degraded answer
   * is capped at it too.
   */
  answerTtlUnknownS: number;
  answerTtlSafeS: number;
  answerTtlSuspiciousS: number;
  answerTtlMaliciousS: number;
  /** Answers at least this large are compressed when the client accepts gzip or br. */
  compressMinBytes: number;
  /**
   * Packages with no verdict and no report for this many days are deleted by the flusher's
   * sweep (with their queue rows); null keeps everything.
   */
  retentionDays: number | null;
  /** How often a flusher starts a retention sweep (one sweeper at a time across replicas). */
  retentionSweepIntervalMs: number;
  /** Index entries one sweep batch (one short transaction) examines. */
  retentionBatchSize: number;
  /** SET LOCAL lock_timeout of a sweep batch: a batch never queues behind a lock for longer. */
  retentionLockTimeoutMs: number;
  /** SET LOCAL statement_timeout of a sweep batch's statements. */
  retentionStatementTimeoutMs: number;
  /**
   * Pause between two batches of one sweep, ms (0 = back to back): the share of PostgreSQL's
   * CPU the sweep takes from lookups (README Retention). No connection or transaction is held
   * during it; the retention lease is renewed across it.
   */
  retentionBatchPauseMs: number;
}

/**
 * How young a pending entry must be to be answered from the buffer: PENDING_ANSWER_MAX_AGE_MS,
 * at most half of CACHE_TTL_S. Half leaves the slowest check (looked PostgreSQL up, then
 * buffered) far more room than it ever takes between the two.
 */
export function pendingAnswerWindowMs(config: Pick<Config, 'pendingAnswerMaxAgeMs' | 'cacheTtlS'>): number {
  return Math.min(config.pendingAnswerMaxAgeMs, (config.cacheTtlS * 1000) / 2);
}

/** Every default, in one place. */
export function configDefaults(): Config {
  return {
    databaseUrl: 'postgres://localhost:5432/safepkg',
    databaseReadUrls: [],
    replicaMaxLagMs: 5000,
    replicaPollIntervalMs: 500,
    pgPooler: 'none',
    redisUrl: 'redis://127.0.0.1:6379',
    redisClusterNodes: null,
    port: 8080,
    flusherPort: 8081,
    adminToken: null,
    keyPrefix: 'safepkg',
    bufferPartitions: 16,
    flushIntervalMs: 1000,
    flushBatchSize: 10000,
    lockTtlMs: 30000,
    cacheTtlS: 3600,
    pendingAnswerMaxAgeMs: 600_000,
    maxBufferDepth: 5_000_000,
    writeMode: 'buffered',
    logLevel: 'info',
    pgStatementTimeoutMs: 30000,
    pgPoolSize: 10,
    flushBackoffMaxMs: 30000,
    retryAfterS: 1,
    analysisClaimTtlMs: 600_000,
    // A push service that was down for a long weekend, or a month of holidays, still resumes
    // from its cursor; beyond that it resynchronises (410 cursor_expired). The rows are small.
    feedRetentionDays: 30,
    rateLimitPoints: 600,
    rateLimitWindowS: 60,
    rateLimitIpPoints: 6000,
    trustProxyHops: 0,
    // Why each lifetime: README, "Configuration" (ANSWER_TTL_*_S).
    answerTtlUnknownS: 300,
    answerTtlSafeS: 86_400,
    answerTtlSuspiciousS: 3600,
    answerTtlMaliciousS: 21_600,
    compressMinBytes: 1024,
    retentionDays: null,
    retentionSweepIntervalMs: 60_000,
    // Small batches, paced: on a PostgreSQL core shared with lookups, a lookup that lands on a
    // batch waits for it, so the batch's length sets the p99 cost and the pause sets how often
    // (measured, README Retention: batches of 1,000 with 200 ms between them 1.23–1.31× lookup p99;
    // 250 with 100 ms 1.01× at 200k rows).
    retentionBatchSize: 250,
    retentionLockTimeoutMs: 100,
    retentionStatementTimeoutMs: 5000,
    // A fixed pause, not a fraction of each batch's time: the sweep's rate has a bound an operator
    // can compute (RETENTION_BATCH_SIZE / (batch time + pause)) and the lease arithmetic stays
    // simple. 100 ms against the ~25 ms batches of 250 measured keeps the sweep busy ~20 % of the
    // time, and sweeps 250 / 0.125 s ≈ 2,000 rows/s, ≈ 170M rows/day: over the 100M stale
    // rows/day a large deployment could produce (at most 2,500 rows/s whatever the batch time).
    retentionBatchPauseMs: 100,
  };
}

const int = (min: number, max: number) =>
  z
    .string()
    .trim()
    .regex(/^\d+$/, 'must be a whole number')
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));

const clusterNodes = z
  .string()
  .trim()
  .transform((s, ctx) => {
    const nodes = s
      .split(',')
      .map((n) => n.trim())
      .filter(Boolean)
      .map((n) => {
        const m = /^(.+):(\d{1,5})$/.exec(n);
        if (!m || Number(m[2]) > 65535) {
          ctx.addIssue({ code: 'custom', message: `"${n}" is not host:port` });
          return null;
        }
        return { host: m[1] as string, port: Number(m[2]) };
      });
    if (nodes.length === 0) ctx.addIssue({ code: 'custom', message: 'needs at least one host:port' });
    return nodes.filter((n): n is { host: string; port: number } => n !== null);
  });

const postgresUrl = z
  .string()
  .trim()
  .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL');

const postgresUrls = z
  .string()
  .trim()
  .transform((s, ctx) => {
    const urls = s
      .split(',')
      .map((u) => u.trim())
      .filter(Boolean);
    for (const u of urls) {
      if (!/^postgres(ql)?:\/\//.test(u))
        ctx.addIssue({ code: 'custom', message: `"${u}" is not a postgres:// URL` });
    }
    if (urls.length === 0) ctx.addIssue({ code: 'custom', message: 'needs at least one postgres:// URL' });
    return urls;
  });

/** Each environment variable, its parser, and the Config field it sets. */
const variables = {
  DATABASE_URL: { field: 'databaseUrl', schema: postgresUrl },
  DATABASE_READ_URL: { field: 'databaseReadUrls', schema: postgresUrls },
  REPLICA_MAX_LAG_MS: { field: 'replicaMaxLagMs', schema: int(0, 3_600_000) },
  REPLICA_POLL_INTERVAL_MS: { field: 'replicaPollIntervalMs', schema: int(10, 60_000) },
  PG_POOLER: { field: 'pgPooler', schema: z.enum(['none', 'transaction']) },
  REDIS_URL: {
    field: 'redisUrl',
    schema: z
      .string()
      .trim()
      .regex(/^rediss?:\/\//, 'must be a redis:// URL'),
  },
  REDIS_CLUSTER_NODES: { field: 'redisClusterNodes', schema: clusterNodes },
  PORT: { field: 'port', schema: int(0, 65535) },
  FLUSHER_PORT: { field: 'flusherPort', schema: int(0, 65535) },
  ADMIN_TOKEN: { field: 'adminToken', schema: z.string().min(16, 'must be at least 16 characters') },
  KEY_PREFIX: {
    field: 'keyPrefix',
    schema: z.string().regex(/^[A-Za-z0-9_-]{1,32}$/, 'must be 1-32 of A-Z a-z 0-9 _ -'),
  },
  BUFFER_PARTITIONS: { field: 'bufferPartitions', schema: int(1, MAX_BUFFER_PARTITIONS) },
  FLUSH_INTERVAL_MS: { field: 'flushIntervalMs', schema: int(10, 3_600_000) },
  FLUSH_BATCH_SIZE: { field: 'flushBatchSize', schema: int(1, 100_000) },
  LOCK_TTL_MS: { field: 'lockTtlMs', schema: int(1000, 3_600_000) },
  CACHE_TTL_S: { field: 'cacheTtlS', schema: int(1, 30 * 86400) },
  PENDING_ANSWER_MAX_AGE_MS: { field: 'pendingAnswerMaxAgeMs', schema: int(0, 30 * 86_400_000) },
  MAX_BUFFER_DEPTH: { field: 'maxBufferDepth', schema: int(1, 1_000_000_000) },
  WRITE_MODE: { field: 'writeMode', schema: z.enum(['buffered', 'direct']) },
  LOG_LEVEL: {
    field: 'logLevel',
    schema: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
  },
  PG_STATEMENT_TIMEOUT_MS: { field: 'pgStatementTimeoutMs', schema: int(100, 3_600_000) },
  PG_POOL_SIZE: { field: 'pgPoolSize', schema: int(1, 1000) },
  FLUSH_BACKOFF_MAX_MS: { field: 'flushBackoffMaxMs', schema: int(10, 3_600_000) },
  RETRY_AFTER_S: { field: 'retryAfterS', schema: int(1, 3600) },
  ANALYSIS_CLAIM_TTL_MS: { field: 'analysisClaimTtlMs', schema: int(1000, 7 * 86_400_000) },
  FEED_RETENTION_DAYS: { field: 'feedRetentionDays', schema: int(1, 3650) },
  RATE_LIMIT_POINTS: { field: 'rateLimitPoints', schema: int(0, 1_000_000_000) },
  RATE_LIMIT_WINDOW_S: { field: 'rateLimitWindowS', schema: int(1, 86400) },
  RATE_LIMIT_IP_POINTS: { field: 'rateLimitIpPoints', schema: int(0, 1_000_000_000) },
  TRUST_PROXY_HOPS: { field: 'trustProxyHops', schema: int(0, 10) },
  ANSWER_TTL_UNKNOWN_S: { field: 'answerTtlUnknownS', schema: int(0, 30 * 86400) },
  ANSWER_TTL_SAFE_S: { field: 'answerTtlSafeS', schema: int(0, 30 * 86400) },
  ANSWER_TTL_SUSPICIOUS_S: { field: 'answerTtlSuspiciousS', schema: int(0, 30 * 86400) },
  ANSWER_TTL_MALICIOUS_S: { field: 'answerTtlMaliciousS', schema: int(0, 30 * 86400) },
  COMPRESS_MIN_BYTES: { field: 'compressMinBytes', schema: int(0, 1_048_576) },
  RETENTION_DAYS: { field: 'retentionDays', schema: int(1, 36_500) },
  RETENTION_SWEEP_INTERVAL_MS: { field: 'retentionSweepIntervalMs', schema: int(1000, 86_400_000) },
  RETENTION_BATCH_SIZE: { field: 'retentionBatchSize', schema: int(1, 10_000) },
  RETENTION_LOCK_TIMEOUT_MS: { field: 'retentionLockTimeoutMs', schema: int(1, 60_000) },
  RETENTION_STATEMENT_TIMEOUT_MS: { field: 'retentionStatementTimeoutMs', schema: int(100, 3_600_000) },
  RETENTION_BATCH_PAUSE_MS: { field: 'retentionBatchPauseMs', schema: int(0, 600_000) },
} as const satisfies Record<string, { field: keyof Config; schema: z.ZodType }>;

export const CONFIG_VARIABLES = Object.keys(variables) as (keyof typeof variables)[];

/**
 * Parses the environment once. Unset or empty variables take their default; any
 * invalid value fails with every bad variable named, so a pod never starts half-configured.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const config = configDefaults();
  const target = config as unknown as Record<string, unknown>;
  const details: { path: string; message: string }[] = [];
  for (const [name, { field, schema }] of Object.entries(variables)) {
    const raw = env[name];
    if (raw === undefined || raw === '') continue;
    const parsed = (schema as z.ZodType).safeParse(raw);
    if (parsed.success) target[field] = parsed.data;
    else details.push(...parsed.error.issues.map((i) => ({ path: name, message: i.message })));
  }
  if (details.length > 0) throw new ConfigError(details);
  return config;
}
