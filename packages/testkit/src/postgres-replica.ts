import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from 'pg';
import { baseBackupStandby } from '@safepkg/pg-process';
import {
  readLog,
  serverControl,
  serverDirectory,
  type PostgresServer,
  type PostgresStopMode,
} from './postgres-server';
import { freePort, waitFor } from './processes';

export interface PostgresReplica {
  port: number;
  /** The replicated `safepkg` database (read-only). */
  url: string;
  adminUrl: string;
  dir: string;
  /** Stops WAL replay (`pg_wal_replay_pause()`): the replica keeps answering, frozen in time. */
  pauseReplay(): Promise<void>;
  resumeReplay(): Promise<void>;
  /** `pg_last_wal_replay_lsn()`, as PostgreSQL prints it. */
  replayLsn(): Promise<string>;
  /** Waits until the replica has replayed everything the primary had written when called. */
  catchUp(primary: PostgresServer): Promise<void>;
  stop(mode: PostgresStopMode): Promise<void>;
  start(): Promise<void>;
  /** SIGKILL to the postmaster and its backends: a crashed replica host. */
  kill(): Promise<void>;
  remove(): Promise<void>;
  log(): Promise<string>;
}

async function one<T>(url: string, sql: string, values: unknown[] = []): Promise<T> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql, values)).rows[0] as T;
  } finally {
    await client.end();
  }
}

/**
 * A streaming replica of a private primary (startPostgresServer): a base backup
 * (`baseBackupStandby`, shared with the bench's replica) into a directory of its own, started
 * as a hot standby on a free port with the primary's test settings.
 */
export async function startPostgresReplica(primary: PostgresServer): Promise<PostgresReplica> {
  const port = await freePort();
  const dir = await serverDirectory('safepkg-pg-replica-');
  const data = join(dir, 'data');
  const logFile = join(dir, 'postgres.log');
  const adminUrl = `postgres://postgres@127.0.0.1:${port}/postgres`;
  const url = `postgres://postgres@127.0.0.1:${port}/safepkg`;
  const control = serverControl(dir, data, port, logFile);
  try {
    await baseBackupStandby({ primaryPort: primary.port, data });
    await control.start();
  } catch (err) {
    if (await control.running()) await control.stop('immediate').catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }

  const replayLsn = async () =>
    (await one<{ lsn: string }>(adminUrl, 'SELECT pg_last_wal_replay_lsn()::text AS lsn')).lsn;

  return {
    port,
    url,
    adminUrl,
    dir,
    async pauseReplay() {
      await one(adminUrl, 'SELECT pg_wal_replay_pause()');
      // The pause is requested, then takes effect between records: wait until it has.
      await waitFor(
        async () =>
          (await one<{ s: string }>(adminUrl, 'SELECT pg_get_wal_replay_pause_state() AS s')).s === 'paused',
        { what: 'replay paused' },
      );
    },
    async resumeReplay() {
      await one(adminUrl, 'SELECT pg_wal_replay_resume()');
    },
    replayLsn,
    async catchUp(server: PostgresServer) {
      const { lsn } = await one<{ lsn: string }>(server.adminUrl, 'SELECT pg_current_wal_lsn()::text AS lsn');
      await waitFor(
        async () =>
          (await one<{ ok: boolean }>(adminUrl, 'SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok', [lsn]))
            .ok,
        { what: `replica replayed ${lsn}` },
      );
    },
    stop: control.stop,
    start: control.start,
    kill: control.kill,
    async remove() {
      await control.signalAll('SIGCONT').catch(() => undefined);
      if (await control.running()) await control.stop('immediate').catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
    log: async () => readLog(logFile),
  };
}
