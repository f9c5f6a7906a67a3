import { execFile } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ensureDatabase, migrate } from '@safepkg/core';
import { asServerUser, runPgBinary, serverDirectory } from '@safepkg/pg-process';
import { freePort, waitFor } from './processes';

const run = promisify(execFile);

// The binaries' runner is shared with the bench (which cannot load this source-only package).
export { asServerUser, runPgBinary, serverDirectory } from '@safepkg/pg-process';

export type PostgresStopMode = 'immediate' | 'fast';

export interface PostgresServer {
  port: number;
  /** The migrated `safepkg` database on this server. */
  url: string;
  /** The server's `postgres` database, for administration. */
  adminUrl: string;
  dir: string;
  /** Wall-clock ms of each start so far (initdb excluded), so callers can report it. */
  readonly startTimesMs: number[];
  /** `immediate` is a crash (no checkpoint; the next start replays WAL); `fast` a clean stop. */
  stop(mode: PostgresStopMode): Promise<void>;
  /** Starts again on the same port and data directory. */
  start(): Promise<void>;
  /**
   * SIGSTOP to the server and its backends: it keeps its sockets open and answers nothing,
   * as a frozen host or a network black hole would (only client-side timeouts help).
   */
  freeze(): Promise<void>;
  /** SIGCONT: undoes freeze(). */
  thaw(): Promise<void>;
  /** Stops it (if running) and deletes its directory. */
  remove(): Promise<void>;
  /** The server's log, for failure messages. */
  log(): Promise<string>;
}

/** A data directory's server process: start, stop, signals. Shared by primaries and replicas. */
export interface ServerControl {
  start(): Promise<void>;
  stop(mode: PostgresStopMode): Promise<void>;
  running(): Promise<boolean>;
  signalAll(signal: 'SIGSTOP' | 'SIGCONT' | 'SIGKILL'): Promise<void>;
  /** SIGKILL to the postmaster and its backends, then waits until every one has exited. */
  kill(): Promise<void>;
  startTimesMs: number[];
}

/** Alive and not a zombie (a container's PID 1 may never reap an orphaned backend). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

export function serverControl(dir: string, data: string, port: number, logFile: string): ServerControl {
  const startTimesMs: number[] = [];
  const serverPids = async () => {
    const postmaster = readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0]?.trim() ?? '';
    const { stdout } = await run('pgrep', ['-P', postmaster]).catch(() => ({ stdout: '' }));
    return [postmaster, ...stdout.split('\n').map((p) => p.trim())].filter(Boolean).map(Number);
  };
  return {
    startTimesMs,
    async start() {
      const began = Date.now();
      await runPgBinary('pg_ctl', [
        '-D',
        data,
        '-l',
        logFile,
        '-w',
        '-t',
        '60',
        '-o',
        `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=${dir} -c fsync=off -c shared_buffers=32MB -c max_connections=60`,
        'start',
      ]).catch((err: Error) => {
        throw new Error(`${err.message}\n--- server log (tail) ---\n${readLog(logFile).slice(-2000)}`, {
          cause: err,
        });
      });
      startTimesMs.push(Date.now() - began);
    },
    async stop(mode: PostgresStopMode) {
      await runPgBinary('pg_ctl', ['-D', data, '-m', mode, '-w', '-t', '60', 'stop']);
    },
    async running() {
      const [cmd, argv] = asServerUser('pg_ctl', ['-D', data, 'status']);
      return run(cmd, argv).then(
        () => true,
        () => false,
      );
    },
    async signalAll(signal) {
      for (const pid of await serverPids()) process.kill(pid, signal);
    },
    async kill() {
      // Stopped first, the postmaster forks no backend between the listing and the kill.
      const [postmaster] = await serverPids();
      if (postmaster !== undefined) process.kill(postmaster, 'SIGSTOP');
      const pids = await serverPids();
      for (const pid of pids) process.kill(pid, 'SIGKILL');
      // A new postmaster refuses to start while a backend of the old one still holds shared memory.
      await waitFor(() => pids.every((pid) => !alive(pid)), { what: 'the killed server to exit' });
      // A killed postmaster nobody reaps stays a zombie, which the next start's lock-file check
      // takes for a running server: the lock is stale once every process is gone or a zombie.
      rmSync(join(data, 'postmaster.pid'), { force: true });
      rmSync(join(dir, `.s.PGSQL.${port}.lock`), { force: true });
    },
  };
}

export function readLog(logFile: string): string {
  try {
    return readFileSync(logFile, 'utf8');
  } catch {
    return '';
  }
}

/**
 * A private PostgreSQL 15 instance for tests that stop or crash PostgreSQL — never the
 * shared server on 5432. initdb (trust auth, no fsync: it only has to survive a process
 * crash, not a power cut) on a free port with its socket in its own directory, then the
 * `safepkg` database, migrated. Measured here: initdb + start + migrate ≈ 0.6 s, a
 * restart ≈ 0.12 s; still, each start is a process the shared 2 cores pay for, so keep them few.
 */
export async function startPostgresServer(options: { port?: number } = {}): Promise<PostgresServer> {
  const port = options.port ?? (await freePort());
  const dir = await serverDirectory('safepkg-pg-');
  const data = join(dir, 'data');
  const logFile = join(dir, 'postgres.log');
  const adminUrl = `postgres://postgres@127.0.0.1:${port}/postgres`;
  const url = `postgres://postgres@127.0.0.1:${port}/safepkg`;
  const control = serverControl(dir, data, port, logFile);
  const { start, stop, running, signalAll, startTimesMs } = control;

  try {
    await runPgBinary('initdb', [
      '-D',
      data,
      '-A',
      'trust',
      '-U',
      'postgres',
      '-E',
      'UTF8',
      '--locale=C',
      '--no-sync',
      '--no-instructions',
    ]);
    await start();
    await ensureDatabase(url);
    await migrate(url);
  } catch (err) {
    if (await running()) await stop('immediate').catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }

  return {
    port,
    url,
    adminUrl,
    dir,
    startTimesMs,
    stop,
    start,
    freeze: () => signalAll('SIGSTOP'),
    thaw: () => signalAll('SIGCONT'),
    async remove() {
      await signalAll('SIGCONT').catch(() => undefined);
      if (await running()) await stop('immediate');
      rmSync(dir, { recursive: true, force: true });
    },
    log: async () => readLog(logFile),
  };
}
