import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { createLogger, type Config } from '@safepkg/core';
import { freePort, type TestContext } from '@safepkg/testkit';
import { Redis } from 'ioredis';
import { Pool } from 'pg';
import { createApp, type AppDeps } from '../src/app';
import { ApiMetrics } from '../src/metrics';

export interface TestServer {
  url: string;
  close(): Promise<void>;
  request(
    method: string,
    path: string,
    body?: unknown,
    headers?: Record<string, string>,
  ): Promise<{ status: number; headers: Headers; body: unknown }>;
}

/** The real app on an ephemeral port, against the test context's PostgreSQL and Redis. */
export async function serveApp(
  ctx: TestContext,
  over: Partial<Config> = {},
  extra: Partial<AppDeps> = {},
): Promise<TestServer> {
  const config = { ...ctx.config, ...over };
  const app = createApp({
    config,
    pool: ctx.db.pool,
    redis: ctx.redis,
    logger: createLogger({ logLevel: 'silent' }, 'test'),
    metrics: new ApiMetrics({ defaultMetrics: false }),
    ...extra,
  });
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    close: () => new Promise((resolve) => server.close(() => resolve())),
    async request(method, path, body, headers = {}) {
      const res = await fetch(`${url}${path}`, {
        method,
        headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
        body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
      });
      const text = await res.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        // not JSON: keep the text
      }
      return { status: res.status, headers: res.headers, body: parsed };
    },
  };
}

/**
 * A PostgreSQL pool and a Redis client pointed at a port nobody listens on: every call fails at
 * once (no offline queue, no retries), as with a dependency that is down.
 */
export async function deadDependencies(): Promise<{ pool: Pool; redis: Redis; close(): Promise<void> }> {
  const closed = await freePort();
  const pool = new Pool({ connectionString: `postgres://postgres@127.0.0.1:${closed}/none` });
  pool.on('error', () => undefined);
  const redis = new Redis({
    port: closed,
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  return {
    pool,
    redis,
    async close() {
      redis.disconnect();
      await pool.end().catch(() => undefined);
    },
  };
}
