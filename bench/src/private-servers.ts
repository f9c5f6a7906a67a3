import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { baseBackupStandby, runPgBinary, serverDirectory } from '@safepkg/pg-process';
import { Client } from 'pg';
import { Redis } from 'ioredis';
import { freePort, waitFor } from './processes';
import { pinned, type Topology } from './topology';

// bench runs from dist/ and @safepkg/testkit is consumed from source only, so this mirrors
// testkit's startPostgresServer / startRedisServer with what a benchmark needs on top: the
// server pinned to cores, and server settings of a small production instance, not a test one.
// Running PostgreSQL's binaries and the replica's base backup are shared with the testkit
// through @safepkg/pg-process (built).

export interface PrivateServer {
  url: string;
  /** The server's main pid (the postmaster, redis-server), for the record. */
  pid: number;
  settings: string[];
  remove(): Promise<void>;
}

/** A PostgreSQL server of the benchmark: its port, and the cores it was started on. */
export interface PrivatePostgres extends PrivateServer {
  port: number;
  cores: number[] | null;
}

const pg = (cores: number[] | null, binary: string, args: string[]) =>
  runPgBinary(binary, args, { cores, timeoutMs: 120_000 });

/**
 * The server settings of every benchmark PostgreSQL. A replica gets the same: a hot standby
 * refuses to start with max_connections below its primary's, and equal memory makes the
 * primary-vs-replica lookup numbers comparable.
 */
function postgresSettings(socketDir: string): string[] {
  return [
    'shared_buffers=256MB',
    'max_connections=200',
    'listen_addresses=127.0.0.1',
    `unix_socket_directories=${socketDir}`,
  ];
}

/** pg_ctl start of `data`, pinned; the data directory's postmaster pid. */
async function startServer(
  cores: number[] | null,
  dir: string,
  data: string,
  port: number,
  settings: string[],
): Promise<number> {
  await pg(cores, 'pg_ctl', [
    '-D',
    data,
    '-l',
    join(dir, 'postgres.log'),
    '-w',
    '-t',
    '60',
    '-o',
    [`-p ${port}`, ...settings.map((s) => `-c ${s}`)].join(' '),
    'start',
  ]);
  return Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
}

function removal(data: string, dir: string): () => Promise<void> {
  return async () => {
    await pg(null, 'pg_ctl', ['-D', data, '-m', 'immediate', '-w', '-t', '60', 'stop']).catch(
      () => undefined,
    );
    rmSync(dir, { recursive: true, force: true });
  };
}

/**
 * A private PostgreSQL 15 for one benchmark invocation, started under `taskset` so the
 * postmaster and every backend it forks stay on `cores`. fsync stays on (a deployment's
 * commits pay for it, and direct mode commits per request); the data directory is removed after.
 */
export async function startBenchPostgres(cores: number[] | null): Promise<PrivatePostgres> {
  const port = await freePort();
  const dir = await serverDirectory('safepkg-bench-pg-');
  const data = join(dir, 'data');
  const settings = postgresSettings(dir);
  await pg(cores, 'initdb', [
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
  ]);
  let pid: number;
  try {
    pid = await startServer(cores, dir, data, port, settings);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    cores,
    pid,
    settings,
    remove: removal(data, dir),
  };
}

/**
 * A streaming replica (hot standby) of a benchmark primary, started under `taskset` on
 * `cores`: the shared base backup (`pg_basebackup -R`, as the testkit's replica), the
 * primary's settings, and returned once its WAL receiver is streaming.
 */
export async function startBenchReplica(
  primary: PrivatePostgres,
  cores: number[] | null,
): Promise<PrivatePostgres> {
  const port = await freePort();
  const dir = await serverDirectory('safepkg-bench-pg-replica-');
  const data = join(dir, 'data');
  const settings = postgresSettings(dir);
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  const remove = removal(data, dir);
  try {
    await baseBackupStandby({ primaryPort: primary.port, data, timeoutMs: 300_000 });
    const pid = await startServer(cores, dir, data, port, settings);
    await waitFor(
      async () => {
        const c = new Client({ connectionString: url });
        await c.connect();
        try {
          const { rows } = await c.query<{ s: string | null }>(
            'SELECT status AS s FROM pg_stat_wal_receiver',
          );
          return rows[0]?.s === 'streaming';
        } finally {
          await c.end();
        }
      },
      { what: `replica on ${port} streaming`, timeoutMs: 60_000 },
    );
    return { url, port, cores, pid, settings, remove };
  } catch (err) {
    await remove();
    throw err;
  }
}

/** A private redis-server (no persistence: the buffer's durability is not what is measured) on `cores`. */
export async function startBenchRedis(cores: number[] | null): Promise<PrivateServer> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'safepkg-bench-redis-'));
  const settings = ['--save', '', '--appendonly', 'no', '--maxmemory-policy', 'noeviction'];
  const [cmd, argv] = pinned(cores, 'redis-server', [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--dir',
    dir,
    ...settings,
  ]);
  const child = spawn(cmd, argv, { stdio: 'ignore' });
  const url = `redis://127.0.0.1:${port}`;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  await waitFor(
    async () => {
      const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      r.on('error', () => undefined);
      try {
        await r.connect();
        return (await r.ping()) === 'PONG';
      } finally {
        r.disconnect();
      }
    },
    { what: `redis-server on ${port}`, timeoutMs: 10_000 },
  );
  return {
    url,
    pid: child.pid ?? -1,
    settings: settings.map((s) => s || "''"),
    async remove() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The split topology's private PostgreSQL and Redis, pinned, and the benchmark process itself
 * (autocannon, and the lookup probe it forks) moved to the load generator's cores.
 */
export async function startTopologyServers(
  topology: Topology,
): Promise<{ postgres: PrivatePostgres; redis: PrivateServer }> {
  const [postgres, redis] = await Promise.all([
    startBenchPostgres(topology.postgres),
    startBenchRedis(topology.redis),
  ]);
  if (topology.loadGenerator)
    execFileSync('taskset', ['-a', '-p', '-c', topology.loadGenerator.join(','), String(process.pid)], {
      stdio: 'ignore',
    });
  return { postgres, redis };
}
