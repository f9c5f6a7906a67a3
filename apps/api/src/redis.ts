import { createRedisClient, type Config, type RedisClient } from '@safepkg/core';

/** The api waits this long for a Redis reply before a check answers without it. */
export const API_REDIS_COMMAND_TIMEOUT_MS = 2000;

/**
 * The api's Redis client. No offline queue: while Redis is down a check falls back to PostgreSQL
 * at once. No resend and no retry of the commands a dropped connection leaves unanswered: they
 * fail at once instead, since a count Redis ran before the drop, sent again after the reconnect,
 * would count its check twice while the check answered 200 once (on a Cluster this also turns off
 * the Cluster's own resend: packages/core/src/redis-client.ts).
 */
export function createApiRedis(config: Config): RedisClient {
  return createRedisClient(config, {
    connectionName: 'safepkg-api',
    maxRetriesPerRequest: 0,
    commandTimeoutMs: API_REDIS_COMMAND_TIMEOUT_MS,
    offlineQueue: false,
    resendAfterReconnect: false,
  });
}
