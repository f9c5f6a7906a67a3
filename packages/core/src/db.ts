import { userInfo } from 'node:os';
import { Pool, type ClientConfig } from 'pg';
import type { Config } from './config';

/**
 * Connection settings from a URL. A URL without a user (the default one) connects as
 * PGUSER, else the OS user, as psql does, even where USER is not set (containers, CI).
 */
export function pgConnection(databaseUrl: string): ClientConfig {
  let url: URL;
  try {
    url = new URL(databaseUrl);
  } catch {
    return { connectionString: databaseUrl };
  }
  // pg lets the URL's (empty) user override an explicit `user`, so put it in the URL.
  if (url.username === '') url.username = process.env.PGUSER ?? process.env.USER ?? userInfo().username;
  return { connectionString: url.toString() };
}

/**
 * The PostgreSQL pool. Every timeout is set so that a stalled server turns into an
 * error the caller handles (degraded answer, flusher backoff) instead of a hang:
 * connecting (or waiting for a pooled connection) gives up after 5 s, or after the
 * statement timeout if that is shorter (no use waiting longer for a connection than a
 * statement may run), a statement is cancelled by the server after
 * PG_STATEMENT_TIMEOUT_MS and abandoned by the client 1 s later (a frozen server cannot
 * cancel: the client's own timeout is then all that bounds the wait), and a session idle
 * inside a transaction is ended by the server.
 */
export function createPool(config: Config, applicationName: string, max = config.pgPoolSize): Pool {
  return new Pool({
    ...pgConnection(config.databaseUrl),
    application_name: applicationName,
    max,
    connectionTimeoutMillis: Math.min(5000, config.pgStatementTimeoutMs),
    idleTimeoutMillis: 30000,
    statement_timeout: config.pgStatementTimeoutMs,
    query_timeout: config.pgStatementTimeoutMs + 1000,
    idle_in_transaction_session_timeout: config.pgStatementTimeoutMs * 2,
    keepAlive: true,
    // Probe an idle pooled connection after 10 s instead of the OS default (2 h), so a
    // server that vanished without closing its sockets is found before a query is sent to it.
    keepAliveInitialDelayMillis: 10_000,
  });
}
