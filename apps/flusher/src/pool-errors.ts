import type { Pool } from 'pg';

/**
 * pg emits 'error' on a checked-out client whose connection dies, besides failing the
 * query in flight; pg-pool listens only while a client is idle. With no listener of our
 * own, PostgreSQL going away in the middle of a flush transaction would crash the flusher
 * with an unhandled 'error' event instead of failing the tick and backing off.
 */
export function absorbClientErrors(pool: Pool, onError: (err: Error) => void): void {
  pool.on('connect', (client) => {
    client.on('error', onError);
  });
  pool.on('error', onError);
}
