import {
  CONFIG_VARIABLES,
  ConfigError,
  configDefaults,
  loadConfig,
  pendingAnswerWindowMs,
  type Config,
} from '@safepkg/core';

function failure(env: NodeJS.ProcessEnv): ConfigError {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('loadConfig accepted an invalid environment');
}

const badVariables = (err: ConfigError) => [...new Set(err.details.map((d) => d.path))].sort();

test('an empty environment gives exactly configDefaults(), and the documented defaults', () => {
  expect(loadConfig({})).toEqual(configDefaults());
  expect(configDefaults()).toMatchObject({
    databaseUrl: 'postgres://localhost:5432/safepkg',
    redisUrl: 'redis://127.0.0.1:6379',
    redisClusterNodes: null,
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
    // Unknown short (asked again soon after analysis), safe long, the verdicts in between.
    answerTtlUnknownS: 300,
    answerTtlSafeS: 86_400,
    answerTtlSuspiciousS: 3600,
    answerTtlMaliciousS: 21_600,
    compressMinBytes: 1024,
  });
  const d = configDefaults();
  expect(d.answerTtlUnknownS).toBeLessThan(d.answerTtlSuspiciousS);
  expect(d.answerTtlSuspiciousS).toBeLessThan(d.answerTtlMaliciousS);
  expect(d.answerTtlMaliciousS).toBeLessThan(d.answerTtlSafeS);
  // Defaults are a fresh object each time: a caller mutating one cannot change another's.
  const a = configDefaults();
  a.bufferPartitions = 1;
  expect(configDefaults().bufferPartitions).toBe(16);
});

test('retention is off unless RETENTION_DAYS is set; its bounds are enforced', () => {
  expect(loadConfig({})).toMatchObject({
    retentionDays: null,
    retentionSweepIntervalMs: 60_000,
    retentionBatchSize: 250,
    retentionLockTimeoutMs: 100,
    retentionStatementTimeoutMs: 5000,
    retentionBatchPauseMs: 100,
  });
  expect(loadConfig({ RETENTION_DAYS: '1' }).retentionDays).toBe(1);
  // 0 = batches back to back (the behaviour before the pause existed).
  expect(loadConfig({ RETENTION_BATCH_PAUSE_MS: '0' }).retentionBatchPauseMs).toBe(0);
  const err = failure({
    RETENTION_DAYS: '0',
    RETENTION_SWEEP_INTERVAL_MS: '999',
    RETENTION_BATCH_SIZE: '10001',
    RETENTION_LOCK_TIMEOUT_MS: '0',
    RETENTION_STATEMENT_TIMEOUT_MS: 'soon',
    RETENTION_BATCH_PAUSE_MS: '-1',
  });
  expect(badVariables(err)).toEqual([
    'RETENTION_BATCH_PAUSE_MS',
    'RETENTION_BATCH_SIZE',
    'RETENTION_DAYS',
    'RETENTION_LOCK_TIMEOUT_MS',
    'RETENTION_STATEMENT_TIMEOUT_MS',
    'RETENTION_SWEEP_INTERVAL_MS',
  ]);
});

test('empty variables take their default', () => {
  expect(loadConfig({ PORT: '', BUFFER_PARTITIONS: '', WRITE_MODE: '' })).toEqual(configDefaults());
});

test('every variable is parsed into its field', () => {
  const env: Record<string, string> = {
    DATABASE_URL: 'postgresql://u@db:5433/x',
    DATABASE_READ_URL: 'postgres://r1/x,postgresql://r2:5433/x',
    REPLICA_MAX_LAG_MS: '2500',
    REPLICA_POLL_INTERVAL_MS: '100',
    PG_POOLER: 'transaction',
    REDIS_URL: 'rediss://cache:6380/2',
    REDIS_CLUSTER_NODES: 'r1:7000,r2:7001',
    PORT: '9000',
    FLUSHER_PORT: '9001',
    ADMIN_TOKEN: 'a-token-of-16-chars',
    KEY_PREFIX: 'Pfx_1-a',
    BUFFER_PARTITIONS: '64',
    FLUSH_INTERVAL_MS: ' 250 ',
    FLUSH_BATCH_SIZE: '5000',
    LOCK_TTL_MS: '10000',
    CACHE_TTL_S: '60',
    PENDING_ANSWER_MAX_AGE_MS: '20000',
    MAX_BUFFER_DEPTH: '1000000',
    WRITE_MODE: 'direct',
    LOG_LEVEL: 'debug',
    PG_STATEMENT_TIMEOUT_MS: '5000',
    PG_POOL_SIZE: '20',
    FLUSH_BACKOFF_MAX_MS: '60000',
    RETRY_AFTER_S: '5',
    ANALYSIS_CLAIM_TTL_MS: '120000',
    FEED_RETENTION_DAYS: '7',
    RATE_LIMIT_POINTS: '0',
    RATE_LIMIT_WINDOW_S: '30',
    RATE_LIMIT_IP_POINTS: '2500',
    TRUST_PROXY_HOPS: '2',
    ANSWER_TTL_UNKNOWN_S: '30',
    ANSWER_TTL_SAFE_S: '604800',
    ANSWER_TTL_SUSPICIOUS_S: '600',
    ANSWER_TTL_MALICIOUS_S: '0',
    COMPRESS_MIN_BYTES: '0',
    RETENTION_DAYS: '30',
    RETENTION_SWEEP_INTERVAL_MS: '15000',
    RETENTION_BATCH_SIZE: '500',
    RETENTION_LOCK_TIMEOUT_MS: '50',
    RETENTION_STATEMENT_TIMEOUT_MS: '2000',
    RETENTION_BATCH_PAUSE_MS: '0',
  };
  // The test covers every variable loadConfig knows: a new one must be added here too.
  expect(Object.keys(env).sort()).toEqual([...CONFIG_VARIABLES].sort());
  const expected: Config = {
    databaseUrl: 'postgresql://u@db:5433/x',
    databaseReadUrls: ['postgres://r1/x', 'postgresql://r2:5433/x'],
    replicaMaxLagMs: 2500,
    replicaPollIntervalMs: 100,
    pgPooler: 'transaction',
    redisUrl: 'rediss://cache:6380/2',
    redisClusterNodes: [
      { host: 'r1', port: 7000 },
      { host: 'r2', port: 7001 },
    ],
    port: 9000,
    flusherPort: 9001,
    adminToken: 'a-token-of-16-chars',
    keyPrefix: 'Pfx_1-a',
    bufferPartitions: 64,
    flushIntervalMs: 250,
    flushBatchSize: 5000,
    lockTtlMs: 10000,
    cacheTtlS: 60,
    pendingAnswerMaxAgeMs: 20000,
    maxBufferDepth: 1_000_000,
    writeMode: 'direct',
    logLevel: 'debug',
    pgStatementTimeoutMs: 5000,
    pgPoolSize: 20,
    flushBackoffMaxMs: 60000,
    retryAfterS: 5,
    analysisClaimTtlMs: 120000,
    feedRetentionDays: 7,
    rateLimitPoints: 0,
    rateLimitWindowS: 30,
    rateLimitIpPoints: 2500,
    trustProxyHops: 2,
    answerTtlUnknownS: 30,
    answerTtlSafeS: 604_800,
    answerTtlSuspiciousS: 600,
    answerTtlMaliciousS: 0,
    compressMinBytes: 0,
    retentionDays: 30,
    retentionSweepIntervalMs: 15000,
    retentionBatchSize: 500,
    retentionLockTimeoutMs: 50,
    retentionStatementTimeoutMs: 2000,
    retentionBatchPauseMs: 0,
  };
  expect(loadConfig(env)).toEqual(expected);
  // Every field is reachable from some variable (none is a default nobody can change).
  expect(Object.keys(expected).sort()).toEqual(Object.keys(configDefaults()).sort());
});

test('invalid values fail at once, naming every bad variable', () => {
  const err = failure({
    DATABASE_URL: 'mysql://db/x',
    REDIS_URL: 'http://cache',
    PORT: '70000',
    FLUSHER_PORT: 'eighty',
    ADMIN_TOKEN: 'short',
    KEY_PREFIX: 'has:colon',
    BUFFER_PARTITIONS: '0',
    FLUSH_INTERVAL_MS: '1.5',
    FLUSH_BATCH_SIZE: '-1',
    LOCK_TTL_MS: '999',
    CACHE_TTL_S: '1e3',
    MAX_BUFFER_DEPTH: '0x10',
    WRITE_MODE: 'fast',
    LOG_LEVEL: 'INFO',
    REDIS_CLUSTER_NODES: 'r1',
    ANSWER_TTL_UNKNOWN_S: '-1',
    ANSWER_TTL_SAFE_S: '2592001',
    ANSWER_TTL_SUSPICIOUS_S: '1h',
    ANSWER_TTL_MALICIOUS_S: '3.5',
    COMPRESS_MIN_BYTES: '1048577',
    // A valid one among them is not reported.
    RETRY_AFTER_S: '2',
  });
  expect(err.code).toBe('invalid_config');
  expect(badVariables(err)).toEqual(
    [
      'DATABASE_URL',
      'REDIS_URL',
      'PORT',
      'FLUSHER_PORT',
      'ADMIN_TOKEN',
      'KEY_PREFIX',
      'BUFFER_PARTITIONS',
      'FLUSH_INTERVAL_MS',
      'FLUSH_BATCH_SIZE',
      'LOCK_TTL_MS',
      'CACHE_TTL_S',
      'MAX_BUFFER_DEPTH',
      'WRITE_MODE',
      'LOG_LEVEL',
      'REDIS_CLUSTER_NODES',
      'ANSWER_TTL_UNKNOWN_S',
      'ANSWER_TTL_SAFE_S',
      'ANSWER_TTL_SUSPICIOUS_S',
      'ANSWER_TTL_MALICIOUS_S',
      'COMPRESS_MIN_BYTES',
    ].sort(),
  );
  for (const name of badVariables(err)) expect(err.message).toContain(`${name}:`);
  expect(err.details.every((d) => d.message.length > 0)).toBe(true);
});

test.each([
  ['PORT', '65535', 65535],
  ['PORT', '0', 0],
  ['BUFFER_PARTITIONS', '1024', 1024],
  ['FLUSH_BATCH_SIZE', '100000', 100000],
  ['LOCK_TTL_MS', '1000', 1000],
])('range bound %s=%s is accepted', (name, value, parsed) => {
  const key = {
    PORT: 'port',
    BUFFER_PARTITIONS: 'bufferPartitions',
    FLUSH_BATCH_SIZE: 'flushBatchSize',
    LOCK_TTL_MS: 'lockTtlMs',
  }[name] as keyof Config;
  expect(loadConfig({ [name]: value })[key]).toBe(parsed);
});

test.each([
  ['PORT', '65536'],
  ['BUFFER_PARTITIONS', '1025'],
  ['FLUSH_BATCH_SIZE', '100001'],
  ['FLUSH_INTERVAL_MS', '9'],
  ['MAX_BUFFER_DEPTH', '99999999999999999999'],
  ['PG_POOL_SIZE', ' '],
  ['KEY_PREFIX', 'x'.repeat(33)],
  ['KEY_PREFIX', 'a*b'],
])('out-of-range or malformed %s=%j is refused', (name, value) => {
  expect(badVariables(failure({ [name]: value }))).toEqual([name]);
});

test('variables loadConfig does not know are ignored, whatever their prefix', () => {
  // As implemented: only the listed variables are read, so a process environment full of
  // unrelated variables (PATH, KUBERNETES_*, …) never fails; a misspelt one is not caught.
  expect(
    loadConfig({
      SAFEPKG_ANYTHING: 'x',
      FLUSH_INTERVAL: 'not-a-number',
      REDIS_CLUSTER: 'x',
      KUBERNETES_SERVICE_HOST: '10.0.0.1',
      PATH: '/usr/bin',
    }),
  ).toEqual(configDefaults());
});

describe('DATABASE_READ_URL', () => {
  test('is a comma-separated list of postgres:// URLs, blanks dropped', () => {
    expect(
      loadConfig({ DATABASE_READ_URL: ' postgres://a/x , ,postgres://b:6432/x,' }).databaseReadUrls,
    ).toEqual(['postgres://a/x', 'postgres://b:6432/x']);
    expect(configDefaults().databaseReadUrls).toEqual([]);
  });

  test('names each URL that is not postgres://', () => {
    const err = failure({ DATABASE_READ_URL: 'postgres://ok/x,mysql://bad/x,redis://worse' });
    expect(badVariables(err)).toEqual(['DATABASE_READ_URL']);
    expect(err.message).toContain('mysql://bad/x');
    expect(err.message).toContain('redis://worse');
    expect(err.message).not.toContain('"postgres://ok/x"');
    expect(badVariables(failure({ DATABASE_READ_URL: ' , ' }))).toEqual(['DATABASE_READ_URL']);
    expect(badVariables(failure({ PG_POOLER: 'session' }))).toEqual(['PG_POOLER']);
  });
});

describe('REDIS_CLUSTER_NODES', () => {
  test('parses a comma-separated host:port list, tolerating spaces and empty items', () => {
    expect(
      loadConfig({ REDIS_CLUSTER_NODES: ' 10.0.0.1:7000 , redis-2.svc:7001,, ' }).redisClusterNodes,
    ).toEqual([
      { host: '10.0.0.1', port: 7000 },
      { host: 'redis-2.svc', port: 7001 },
    ]);
  });

  test('a single node is a cluster too; REDIS_URL keeps its default beside it', () => {
    const config = loadConfig({ REDIS_CLUSTER_NODES: 'r:6379' });
    expect(config.redisClusterNodes).toEqual([{ host: 'r', port: 6379 }]);
    expect(config.redisUrl).toBe(configDefaults().redisUrl);
  });

  test.each([['r1'], ['r1:'], [':7000'], ['r1:70000'], ['r1:7000,r2'], [','], ['r1:abc']])(
    '%j is refused',
    (value) => {
      const err = failure({ REDIS_CLUSTER_NODES: value });
      expect(badVariables(err)).toEqual(['REDIS_CLUSTER_NODES']);
    },
  );

  test('every bad node is named in the message', () => {
    const err = failure({ REDIS_CLUSTER_NODES: 'good:1,bad1,bad2:99999' });
    expect(err.message).toContain('"bad1"');
    expect(err.message).toContain('"bad2:99999"');
    expect(err.message).not.toContain('"good:1"');
  });
});

test('the pending-answer window is PENDING_ANSWER_MAX_AGE_MS, at most half the cache TTL', () => {
  expect(pendingAnswerWindowMs(configDefaults())).toBe(600_000);
  expect(pendingAnswerWindowMs(loadConfig({ CACHE_TTL_S: '60' }))).toBe(30_000);
  expect(pendingAnswerWindowMs(loadConfig({ PENDING_ANSWER_MAX_AGE_MS: '0' }))).toBe(0);
});
