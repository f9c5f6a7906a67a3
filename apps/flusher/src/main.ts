import { Queue, Worker } from 'bullmq';
import {
  assertReachable,
  createLogger,
  createPool,
  createRedisClient,
  FLUSH_QUEUE_NAME,
  KeySchema,
  loadConfig,
  PackageStore,
  RedisBuffer,
  ReportBuffer,
  SafepkgError,
  VerdictFeed,
} from '@safepkg/core';
import { crashPointFromEnv } from './crash-points';
import { Flusher } from './flusher';
import { createHealthServer } from './health-server';
import { FeedRetention } from './feed-retention';
import { FlusherMetrics } from './metrics';
import { absorbClientErrors } from './pool-errors';
import { RetentionSweeper } from './retention-sweeper';
import { ScheduleKeeper } from './schedule-keeper';

async function main(): Promise<void> {
  const config = loadConfig(process.env);
  const logger = createLogger(config, 'safepkg-flusher');
  const pool = createPool(config, 'safepkg-flusher', 4);
  const redis = createRedisClient(config, {
    connectionName: 'safepkg-flusher',
    maxRetriesPerRequest: 1,
    commandTimeoutMs: 10_000,
  });
  // BullMQ's blocking worker connection must never give up on a command.
  const queueRedis = createRedisClient(config, {
    connectionName: 'safepkg-flusher-queue',
    maxRetriesPerRequest: null,
  });
  queueRedis.on('error', (err: Error) => logger.warn({ err: err.message }, 'redis (queue) connection error'));
  // Connection errors are retried by ioredis; log them instead of crashing on an unhandled event.
  redis.on('error', (err: Error) => logger.warn({ err: err.message }, 'redis connection error'));
  absorbClientErrors(pool, (err) => logger.warn({ err: err.message }, 'postgres connection error'));
  // Until the worker exists there is nothing to finish: a stop during start-up just exits.
  let shutdown = (signal: string): void => {
    logger.info({ signal }, 'stopped during start-up');
    process.exit(0);
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  // Start even while a dependency is down: the flusher is the one process that must be running
  // when it comes back (a crash loop would delay the drain by the orchestrator's backoff).
  // Ticks fail and back off meanwhile, and /readyz says not ready.
  await assertReachable(config, pool, redis).catch((err: unknown) => {
    logger.warn({ err: (err as Error).message }, 'starting with a dependency down; flushing once it answers');
  });

  const keys = new KeySchema(config.keyPrefix);
  const metrics = new FlusherMetrics();
  const buffer = new RedisBuffer(redis, keys, config.bufferPartitions, config.maxBufferDepth);
  // One hook for the flush and the sweep: it counts only the point it was given.
  const checkpoint = crashPointFromEnv(process.env);
  const flusher = new Flusher({
    config,
    redis,
    keys,
    buffer,
    reports: new ReportBuffer(redis, keys, config.bufferPartitions),
    store: new PackageStore(pool),
    metrics,
    logger,
    leases: process.env.SAFEPKG_TEST_NO_LEASE !== '1',
    checkpoint,
  });

  const sweeper = new RetentionSweeper({ config, pool, redis, keys, buffer, metrics, logger, checkpoint });
  sweeper.start();
  const feedRetention = new FeedRetention(new VerdictFeed(pool), config.feedRetentionDays, logger);

  const startedAt = Date.now();
  const health = createHealthServer({
    pool,
    redis,
    registry: metrics.registry,
    lastSuccessAt: () => flusher.lastSuccessAt,
    startedAt,
    maxTickAgeMs: Math.max(60_000, config.flushIntervalMs * 10),
  });
  health.listen(config.flusherPort, () =>
    logger.info({ port: config.flusherPort }, 'flusher health server listening'),
  );

  const prefix = keys.queuePrefix();
  const queue = new Queue(FLUSH_QUEUE_NAME, { connection: queueRedis, prefix });
  let lastTickAt = Date.now();
  const scheduler = new ScheduleKeeper({
    queue,
    connection: queueRedis,
    everyMs: config.flushIntervalMs,
    lastTickAt: () => lastTickAt,
    logger,
  });
  scheduler.start();
  const worker = new Worker(
    FLUSH_QUEUE_NAME,
    async () => {
      lastTickAt = Date.now();
      const result = await flusher.tick();
      await flusher.observeBuffer().catch(() => undefined);
      await feedRetention.maybePrune();
      return { partitions: result.partitions.length, error: result.error };
    },
    {
      connection: queueRedis,
      prefix,
      concurrency: 1,
      removeOnComplete: { count: 0 },
      removeOnFail: { count: 100 },
    },
  );
  worker.on('error', (err) => logger.warn({ err }, 'worker error'));
  logger.info(
    {
      partitions: config.bufferPartitions,
      intervalMs: config.flushIntervalMs,
      batchSize: config.flushBatchSize,
      retentionDays: config.retentionDays,
      retentionBatchPauseMs: config.retentionBatchPauseMs,
    },
    'safepkg flusher started',
  );

  let stopping = false;
  shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down: finishing the current batch and releasing leases');
    flusher.stop();
    scheduler.stop();
    const force = setTimeout(() => {
      logger.warn('shutdown timed out; exiting (unconfirmed entries stay buffered)');
      process.exit(1);
    }, 20_000);
    force.unref();
    // The sweep's current batch (one short transaction) finishes, a pause ends at once; no new batch starts.
    await sweeper.stop();
    await worker.close().catch(() => undefined);
    await queue.close().catch(() => undefined);
    health.close();
    await pool.end().catch(() => undefined);
    redis.disconnect();
    queueRedis.disconnect();
    logger.info('stopped');
    process.exit(0);
  };
}

main().catch((err: unknown) => {
  const message = err instanceof SafepkgError ? err.message : err instanceof Error ? err.stack : String(err);
  console.error(`safepkg-flusher: ${message}`);
  process.exit(1);
});
