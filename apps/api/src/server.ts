import { createServer, type Server } from 'node:http';
import type { Express } from 'express';

export interface ServerTimeouts {
  /** Time to receive the complete request headers. */
  headersTimeoutMs: number;
  /** Time to receive the complete request. */
  requestTimeoutMs: number;
  /** Idle time a kept-alive connection is held between requests. */
  keepAliveTimeoutMs: number;
  /** How often Node checks the two timeouts above (its default, 30 s, lets a slow client overstay). */
  checkIntervalMs: number;
}

export function defaultServerTimeouts(): ServerTimeouts {
  return {
    headersTimeoutMs: 10_000,
    requestTimeoutMs: 30_000,
    keepAliveTimeoutMs: 5_000,
    checkIntervalMs: 1_000,
  };
}

/** The HTTP server for the app, with every timeout set deliberately so slow clients cannot hold connections. */
export function createHttpServer(app: Express, timeouts: ServerTimeouts = defaultServerTimeouts()): Server {
  const server = createServer(
    {
      headersTimeout: timeouts.headersTimeoutMs,
      requestTimeout: timeouts.requestTimeoutMs,
      keepAliveTimeout: timeouts.keepAliveTimeoutMs,
      connectionsCheckingInterval: timeouts.checkIntervalMs,
    },
    app,
  );
  return server;
}
