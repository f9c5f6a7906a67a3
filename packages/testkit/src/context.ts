import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { configDefaults, KeySchema, type Config } from '@safepkg/core';
import { createTestDatabase, type TestDatabase } from './database';

export interface TestContext {
  config: Config;
  db: TestDatabase;
  redis: Redis;
  keys: KeySchema;
}

declare global {
  // Set by environment.js when a test or hook of the file fails.
  var __SAFEPKG_TEST_FAILED__: boolean | undefined;
}

export function randomPrefix(): string {
  return `t${randomBytes(5).toString('hex')}`;
}

/** Deletes every key of a prefix (buffer partitions, cache, BullMQ). */
export async function deletePrefix(redis: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `*${prefix}*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length) await redis.unlink(...keys);
  } while (cursor !== '0');
}

/**
 * Registers beforeAll/afterAll that give the test file its own database (from the
 * migrated template) and its own KEY_PREFIX on the shared Redis. A file with a failed
 * test keeps its database for reading; the others are dropped.
 */
export function useTestContext(overrides: Partial<Config> = {}): TestContext {
  const ctx = {} as TestContext;
  beforeAll(async () => {
    const db = await createTestDatabase(
      expect
        .getState()
        .testPath?.split('/')
        .pop()
        ?.replace(/\.test\.ts$/, ''),
    );
    const config: Config = {
      ...configDefaults(),
      databaseUrl: db.url,
      redisUrl: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
      keyPrefix: randomPrefix(),
      logLevel: 'silent',
      // Off unless a test is about it: many requests come from one client here.
      rateLimitPoints: 0,
      ...overrides,
    };
    Object.assign(ctx, {
      config,
      db,
      redis: new Redis(config.redisUrl),
      keys: new KeySchema(config.keyPrefix),
    });
  });
  afterAll(async () => {
    if (!ctx.db) return;
    const failed = globalThis.__SAFEPKG_TEST_FAILED__ === true;
    if (!failed) await deletePrefix(ctx.redis, ctx.config.keyPrefix);
    ctx.redis.disconnect();
    await ctx.db.close(failed);
  });
  return ctx;
}

/** The environment a child api/flusher process needs to run against this context. */
export function contextEnv(config: Config, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    DATABASE_URL: config.databaseUrl,
    REDIS_URL: config.redisUrl,
    KEY_PREFIX: config.keyPrefix,
    BUFFER_PARTITIONS: String(config.bufferPartitions),
    FLUSH_INTERVAL_MS: String(config.flushIntervalMs),
    FLUSH_BATCH_SIZE: String(config.flushBatchSize),
    LOCK_TTL_MS: String(config.lockTtlMs),
    MAX_BUFFER_DEPTH: String(config.maxBufferDepth),
    WRITE_MODE: config.writeMode,
    RATE_LIMIT_POINTS: String(config.rateLimitPoints),
    RATE_LIMIT_WINDOW_S: String(config.rateLimitWindowS),
    RATE_LIMIT_IP_POINTS: String(config.rateLimitIpPoints),
    LOG_LEVEL: process.env.TEST_CHILD_LOG_LEVEL ?? 'info',
    ...(config.adminToken ? { ADMIN_TOKEN: config.adminToken } : {}),
    ...extra,
  };
}
