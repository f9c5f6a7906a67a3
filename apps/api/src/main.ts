import type { Server } from 'node:http';
import { Queue } from 'bullmq';
import {
  assertReachable,
  createLogger,
  createPool,
  createRedisClient,
  FLUSH_QUEUE_NAME,
  KeySchema,
  loadConfig,
  SafepkgError,
} from '@safepkg/core';
import { createApp } from './app';
import { createHttpServer } from './server';

async function main(): Promise<void> {
  const config = loadConfig(process.env);
  const logger = createLogger(config, 'safepkg-api');
  const pool = createPool(config, 'safepkg-api');
  const redis = createRedisClient(config, { connectionName: 'safepkg-api', maxRetriesPerRequest: 1, commandTimeoutMs: 2000 });
  // Connection errors are retried by ioredis; log them instead of crashing on an unhandled event.
  redis.on('error', (err: Error) => logger.warn({ err: err.message }, 'redis connection error'));
  pool.on('error', (err: Error) => logger.warn({ err: err.message }, 'idle postgres connection error'));
  await assertReachable(config, pool, redis);

  let queue: Queue | undefined;
  const requestFlush = async () => {
    queue ??= new Queue(FLUSH_QUEUE_NAME, { connection: redis, prefix: new KeySchema(config.keyPrefix).queuePrefix() });
    await queue.add('flush', { reason: 'admin' }, { removeOnComplete: true, removeOnFail: 100 });
  };

  const app = createApp({ config, pool, redis, logger, requestFlush });
  const server: Server = createHttpServer(app);
  server.listen(config.port, () => {
    logger.info({ port: config.port, writeMode: config.writeMode }, 'safepkg api listening');
  });

  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down: finishing in-flight requests');
    const force = setTimeout(() => {
      logger.warn('in-flight requests did not finish in time; closing');
      server.closeAllConnections();
    }, 10_000);
    force.unref();
    server.close(async () => {
      await queue?.close().catch(() => undefined);
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

main().catch((err: unknown) => {
  const message = err instanceof SafepkgError ? err.message : err instanceof Error ? err.stack : String(err);
  console.error(`safepkg-api: ${message}`);
  process.exit(1);
});
