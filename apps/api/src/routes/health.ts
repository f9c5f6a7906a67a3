import { Router } from 'express';
import { pingPostgres, pingRedis, type RedisClient } from '@safepkg/core';
import type { Pool } from 'pg';
import type { Registry } from 'prom-client';

export function healthRouter(deps: { pool: Pool; redis: RedisClient; registry: Registry }): Router {
  const router = Router();
  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  router.get('/readyz', async (_req, res) => {
    const [postgres, redis] = await Promise.allSettled([pingPostgres(deps.pool), pingRedis(deps.redis)]);
    const checks = { postgres: postgres.status === 'fulfilled', redis: redis.status === 'fulfilled' };
    res.status(checks.postgres && checks.redis ? 200 : 503).json({ status: checks.postgres && checks.redis ? 'ready' : 'not_ready', checks });
  });
  router.get('/metrics', async (_req, res) => {
    res.setHeader('Content-Type', deps.registry.contentType);
    res.send(await deps.registry.metrics());
  });
  return router;
}
