import { Router } from 'express';
import { pingPostgres, pingRedis, type RedisClient } from '@safepkg/core';
import type { Pool } from 'pg';
import type { Registry } from 'prom-client';

export type Readiness = 'ready' | 'degraded' | 'not_ready';

/**
 * The API answers (degraded) while either Redis or PostgreSQL is up, so readiness fails
 * only when both are down. Failing it on one outage would make the orchestrator pull every
 * pod at once and turn a degraded service into a full outage (docs/operations.md).
 */
export function readinessOf(checks: { postgres: boolean; redis: boolean }): Readiness {
  if (checks.postgres && checks.redis) return 'ready';
  return checks.postgres || checks.redis ? 'degraded' : 'not_ready';
}

export function healthRouter(deps: { pool: Pool; redis: RedisClient; registry: Registry }): Router {
  const router = Router();
  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  router.get('/readyz', async (_req, res) => {
    const [postgres, redis] = await Promise.allSettled([pingPostgres(deps.pool), pingRedis(deps.redis)]);
    const checks = { postgres: postgres.status === 'fulfilled', redis: redis.status === 'fulfilled' };
    const status = readinessOf(checks);
    res.status(status === 'not_ready' ? 503 : 200).json({ status, checks });
  });
  router.get('/metrics', async (_req, res) => {
    res.setHeader('Content-Type', deps.registry.contentType);
    res.send(await deps.registry.metrics());
  });
  return router;
}
