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
  /**
   * Queue commands while disconnected (ioredis' default) or reject them at once. Request
   * paths that have a fallback want `false`: with the queue, every command issued while
   * Redis is down waits for the next reconnect attempt (up to the 2 s retry delay) before
   * failing, so each degraded answer would cost seconds.
   */
  offlineQueue?: boolean;
  /**
   * Send again, after a reconnect, the commands whose replies the lost connection took with it
   * (ioredis' default) or fail them. Paths whose commands count something want `false`: Redis
   * may have run such a command before the connection dropped, and running it again would count
   * twice while the caller sees one success.
   */
  resendAfterReconnect?: boolean;
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
    enableOfflineQueue: options.offlineQueue ?? true,
    autoResendUnfulfilledCommands: options.resendAfterReconnect ?? true,
    // Reconnect forever with a capped delay: Redis coming back must heal every process.
    retryStrategy: (times) => Math.min(times * 100, 2000),
  };
  if (config.redisClusterNodes) {
    return new Cluster(config.redisClusterNodes, {
      redisOptions: base,
      // The Cluster sends a command again itself when its node's connection closed (after
      // `retryDelayOnFailover` ms), whatever the node options say; 0 turns that off.
      ...(options.resendAfterReconnect === false ? { retryDelayOnFailover: 0 } : {}),
      enableOfflineQueue: options.offlineQueue ?? true,
      clusterRetryStrategy: (times) => Math.min(times * 100, 2000),
    });
  }
  return new Redis(config.redisUrl, base);
}

/**
 * Resolves once the client is connected and ready, rejects after `timeoutMs`. A client
 * without an offline queue rejects commands until then, so start-up waits for this first.
 */
export async function waitUntilReady(client: RedisClient, timeoutMs: number): Promise<void> {
  if (client.status === 'ready') return;
  let timer: NodeJS.Timeout | undefined;
  let onReady: (() => void) | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      onReady = resolve;
      client.once('ready', onReady);
      timer = setTimeout(() => reject(new Error(`not ready within ${timeoutMs} ms`)), timeoutMs);
    });
  } finally {
    clearTimeout(timer);
    if (onReady) client.off('ready', onReady);
  }
}

export function isCluster(client: RedisClient): client is Cluster {
  return client instanceof Cluster;
}
