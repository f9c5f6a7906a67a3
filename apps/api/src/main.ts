import type { Server, ServerResponse } from 'node:http';
import { Queue } from 'bullmq';
import {
  assertReachable,
  createLogger,
  createPool,
  FLUSH_QUEUE_NAME,
  KeySchema,
  loadConfig,
  pingPostgres,
  PackageStore,
  pingRedis,
  ReadPool,
  replicaName,
  SafepkgError,
  VerdictLsn,
  waitUntilReady,
  type Config,
  type Logger,
  type RedisClient,
} from '@safepkg/core';
import type { Pool } from 'pg';
import { createApp } from './app';
import { ApiMetrics } from './metrics';
import { createApiRedis } from './redis';
import { createHttpServer } from './server';

async function main(): Promise<void> {
  const config = loadConfig(process.env);
  const logger = createLogger(config, 'safepkg-api');
  const pool = createPool(config, 'safepkg-api');
  const redis = createApiRedis(config);
  // Connection errors are retried by ioredis; log them instead of crashing on an unhandled event.
  redis.on('error', (err: Error) => logger.warn({ err: err.message }, 'redis connection error'));
  pool.on('error', (err: Error) => logger.warn({ err: err.message }, 'idle postgres connection error'));
  await assertOneReachable(config, pool, redis, logger);

  let queue: Queue | undefined;
  const requestFlush = async () => {
    queue ??= new Queue(FLUSH_QUEUE_NAME, {
      connection: redis,
      prefix: new KeySchema(config.keyPrefix).queuePrefix(),
    });
    await queue.add('flush', { reason: 'admin' }, { removeOnComplete: true, removeOnFail: 100 });
  };

  const metrics = new ApiMetrics();
  const reads = createReadPool(config, pool, redis, logger, metrics);
  reads?.start();
  const app = createApp({
    config,
    pool,
    redis,
    logger,
    requestFlush,
    metrics,
    reads,
    // The benchmark's baseline for the cost of counting reports; never set in production.
    countReports: process.env.SAFEPKG_TEST_NO_REPORTS !== '1',
  });

  const server: Server = createHttpServer(app);
  let stopping = false;
  const inFlight = new Set<ServerResponse>();
  server.on('request', (_req, res: ServerResponse) => {
    // Once stopping, every answer closes its connection so that server.close() can finish
    // without waiting for kept-alive sockets to time out.
    if (stopping) res.setHeader('Connection', 'close');
    inFlight.add(res);
    res.on('close', () => inFlight.delete(res));
  });
  server.listen(config.port, () => {
    logger.info({ port: config.port, writeMode: config.writeMode }, 'safepkg api listening');
  });

  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal, inFlight: inFlight.size }, 'shutting down: finishing in-flight requests');
    for (const res of inFlight) if (!res.headersSent) res.setHeader('Connection', 'close');
    const force = setTimeout(() => {
      logger.warn('in-flight requests did not finish in time; closing');
      server.closeAllConnections();
    }, 10_000);
    force.unref();
    server.close(async () => {
      await queue?.close().catch(() => undefined);
      await reads?.close();
      await pool.end().catch(() => undefined);
      redis.disconnect();
      logger.info('stopped');
      process.exit(0);
    });
    server.closeIdleConnections();
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

/**
 * One pool per DATABASE_READ_URL (same size and timeouts as the primary's), behind a
 * ReadPool that routes lookups; undefined when there are no replicas.
 */
function createReadPool(
  config: Config,
  primary: Pool,
  redis: RedisClient,
  logger: Logger,
  metrics: ApiMetrics,
): ReadPool | undefined {
  if (config.databaseReadUrls.length === 0) return undefined;
  const replicas = config.databaseReadUrls.map((url) => {
    const pool = createPool(config, 'safepkg-api-read', config.pgPoolSize, url);
    pool.on('error', (err: Error) => logger.warn({ err: err.message }, 'idle replica connection error'));
    return { name: replicaName(url), pool, store: new PackageStore(pool) };
  });
  const reads = new ReadPool({
    primary: new PackageStore(primary),
    replicas,
    verdictLsn: new VerdictLsn(redis, new KeySchema(config.keyPrefix)),
    maxLagMs: config.replicaMaxLagMs,
    pollIntervalMs: config.replicaPollIntervalMs,
    logger,
    observer: metrics.readObserver(),
  });
  metrics.observeReadPool(reads);
  return reads;
}

/**
 * The api answers (degraded) while either Redis or PostgreSQL is up, so a pod restarted
 * during an outage of one of them must come up and serve; it refuses to start only when
 * neither answers, with the message naming them.
 */
async function assertOneReachable(
  config: Config,
  pool: Pool,
  redis: RedisClient,
  logger: Logger,
): Promise<void> {
  const [postgres, redisUp] = await Promise.allSettled([
    pingPostgres(pool, 5000),
    waitUntilReady(redis, 5000).then(() => pingRedis(redis, 5000)),
  ]);
  if (postgres.status === 'rejected' && redisUp.status === 'rejected') {
    await assertReachable(config, pool, redis);
  }
  if (postgres.status === 'rejected')
    logger.warn(
      { err: (postgres.reason as Error).message },
      'PostgreSQL is not answering; starting degraded',
    );
  if (redisUp.status === 'rejected')
    logger.warn({ err: (redisUp.reason as Error).message }, 'Redis is not answering; starting degraded');
}

main().catch((err: unknown) => {
  const message = err instanceof SafepkgError ? err.message : err instanceof Error ? err.stack : String(err);
  console.error(`safepkg-api: ${message}`);
  process.exit(1);
});
