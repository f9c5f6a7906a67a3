import { userInfo } from 'node:os';
import { Pool, type ClientConfig, type PoolClient } from 'pg';
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

// Pools whose server end is a transaction-mode pooler. Held beside the pool rather than in
// every store's options, so each store built on a pool follows its rules without being told.
const behindTransactionPooler = new WeakSet<Pool>();

/**
 * A statement name for pg's `name:` (prepared once per connection, reused after), or none
 * when the pool is behind a transaction-mode pooler: there the next transaction may run on
 * another server connection, which never saw the PREPARE (pgbouncer < 1.21 does not carry
 * prepared statements over; Debian 12 ships 1.18).
 */
export function statementName(pool: Pool, name: string): string | undefined {
  return behindTransactionPooler.has(pool) ? undefined : name;
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
export function createPool(
  config: Config,
  applicationName: string,
  max = config.pgPoolSize,
  url = config.databaseUrl,
): Pool {
  const pooled = config.pgPooler === 'transaction';
  // Behind a transaction pooler the server-side timeouts come from the pooler's
  // connect_query (README "Scaling"): pgbouncer refuses a startup packet carrying settings
  // it cannot track per client, and a SET would stick to a server connection, not to us.
  const serverTimeouts = pooled
    ? {}
    : {
        statement_timeout: config.pgStatementTimeoutMs,
        idle_in_transaction_session_timeout: config.pgStatementTimeoutMs * 2,
      };
  const pool = new Pool({
    ...pgConnection(url),
    application_name: applicationName,
    max,
    connectionTimeoutMillis: Math.min(5000, config.pgStatementTimeoutMs),
    idleTimeoutMillis: 30000,
    ...serverTimeouts,
    query_timeout: config.pgStatementTimeoutMs + 1000,
    keepAlive: true,
    // Probe an idle pooled connection after 10 s instead of the OS default (2 h), so a
    // server that vanished without closing its sockets is found before a query is sent to it.
    keepAliveInitialDelayMillis: 10_000,
  });
  if (pooled) behindTransactionPooler.add(pool);
  return pool;
}

/**
 * Runs `work` in one transaction on a pooled connection: COMMIT when it returns, ROLLBACK when
 * it throws (the error is rethrown; a failed ROLLBACK is not what the caller needs to hear).
 */
export async function inTransaction<T>(pool: Pool, work: (client: PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}
