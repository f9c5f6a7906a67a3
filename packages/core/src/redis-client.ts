import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { Config } from './config';

/** A single Redis or a Redis Cluster; everything in core works with either. */
export type RedisClient = Redis | Cluster;

export interface RedisClientOptions {
  /** BullMQ workers need null (block forever); request paths want a bound so they fail fast. */
  maxRetriesPerRequest?: number | null;
  /** Name shown in CLIENT LIST, for operators. */
  connectionName?: string;
  /** Reject a command with no reply after this long (request paths: a hung Redis must not hang requests). */
  commandTimeoutMs?: number;
}

/**
 * Builds (does not connect eagerly beyond ioredis' own lazy connect) the Redis client
 * for the configured topology.
 */
export function createRedisClient(config: Config, options: RedisClientOptions = {}): RedisClient {
  const base: RedisOptions = {
    maxRetriesPerRequest: options.maxRetriesPerRequest === undefined ? 2 : options.maxRetriesPerRequest,
    connectionName: options.connectionName,
    commandTimeout: options.commandTimeoutMs,
    connectTimeout: 5000,
    // Reconnect forever with a capped delay: Redis coming back must heal every process.
    retryStrategy: (times) => Math.min(times * 100, 2000),
  };
  if (config.redisClusterNodes) {
    return new Cluster(config.redisClusterNodes, {
      redisOptions: base,
      clusterRetryStrategy: (times) => Math.min(times * 100, 2000),
    });
  }
  return new Redis(config.redisUrl, base);
}

export function isCluster(client: RedisClient): client is Cluster {
  return client instanceof Cluster;
}
