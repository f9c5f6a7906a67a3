import { createServer, type Server } from 'node:http';
import { pingPostgres, pingRedis, type RedisClient } from '@safepkg/core';
import type { Pool } from 'pg';
import type { Registry } from 'prom-client';

export interface HealthDeps {
  pool: Pool;
  redis: RedisClient;
  registry: Registry;
  /** Epoch ms of the last successful tick, or null before the first. */
  lastSuccessAt: () => number | null;
  startedAt: number;
  /** A tick older than this means the flusher is stuck or failing. */
  maxTickAgeMs: number;
}

/** /healthz, /readyz and /metrics for the flusher (it has no other HTTP surface). */
export function createHealthServer(deps: HealthDeps): Server {
  return createServer((req, res) => {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    const route = req.url?.split('?')[0];
    if (req.method !== 'GET')
      return send(405, { error: { code: 'method_not_allowed', message: 'GET only', details: [] } });
    if (route === '/healthz') return send(200, { status: 'ok' });
    if (route === '/readyz') {
      void Promise.allSettled([pingPostgres(deps.pool), pingRedis(deps.redis)]).then(([pg, redis]) => {
        const last = deps.lastSuccessAt();
        const since = last ?? deps.startedAt;
        const checks = {
          postgres: pg.status === 'fulfilled',
          redis: redis.status === 'fulfilled',
          recentTick: Date.now() - since <= deps.maxTickAgeMs,
        };
        const ok = checks.postgres && checks.redis && checks.recentTick;
        send(ok ? 200 : 503, {
          status: ok ? 'ready' : 'not_ready',
          checks,
          lastSuccessAt: last ? new Date(last).toISOString() : null,
        });
      });
      return;
    }
    if (route === '/metrics') {
      void deps.registry.metrics().then((text) => {
        res.writeHead(200, { 'Content-Type': deps.registry.contentType });
        res.end(text);
      });
      return;
    }
    send(404, { error: { code: 'not_found', message: `no route ${req.method} ${route}`, details: [] } });
  });
}
