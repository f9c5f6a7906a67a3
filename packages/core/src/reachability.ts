import type { Pool } from 'pg';
import type { Config } from './config';
import { DependencyUnreachableError } from './errors';
import type { RedisClient } from './redis-client';

function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparsable URL)';
  }
}

async function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

export async function pingPostgres(pool: Pool, timeoutMs = 2000): Promise<void> {
  await withTimeout(pool.query('SELECT 1'), timeoutMs);
}

export async function pingRedis(redis: RedisClient, timeoutMs = 2000): Promise<void> {
  await withTimeout(redis.ping(), timeoutMs);
}

/** Start-up check: one clear line naming the dependency that does not answer and how to start it. */
export async function assertReachable(config: Config, pool: Pool, redis: RedisClient): Promise<void> {
  try {
    await pingPostgres(pool, 5000);
  } catch (err) {
    throw new DependencyUnreachableError(
      'postgres',
      `PostgreSQL at ${redact(config.databaseUrl)} is not answering (${(err as Error).message}). ` +
        'Start it (e.g. `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`) or set DATABASE_URL.',
      { cause: err },
    );
  }
  try {
    await pingRedis(redis, 5000);
  } catch (err) {
    const where = config.redisClusterNodes
      ? `cluster ${config.redisClusterNodes.map((n) => `${n.host}:${n.port}`).join(',')}`
      : redact(config.redisUrl);
    throw new DependencyUnreachableError(
      'redis',
      `Redis at ${where} is not answering (${(err as Error).message}). ` +
        'Start it (e.g. `redis-server --daemonize yes --port 6379`) or set REDIS_URL.',
      { cause: err },
    );
  }
}
