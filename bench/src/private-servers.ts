import { execFile, execFileSync, spawn } from 'node:child_process';
import { chownSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { freePort, waitFor } from './processes';
import { pinned, type Topology } from './topology';

// bench runs from dist/ and @safepkg/testkit is consumed from source only, so this mirrors
// testkit's startPostgresServer / startRedisServer with what a benchmark needs on top: the
// server pinned to cores, and server settings of a small production instance, not a test one.
const run = promisify(execFile);
const PG_BIN = process.env.PG_BIN ?? '/usr/lib/postgresql/15/bin';

export interface PrivateServer {
  url: string;
  /** The server's main pid (the postmaster, redis-server), for the record. */
  pid: number;
  settings: string[];
  remove(): Promise<void>;
}

/** PostgreSQL refuses to run as root: there, its binaries run as the `postgres` OS user. */
function asServerUser(binary: string, args: string[]): [string, string[]] {
  const path = join(PG_BIN, binary);
  return userInfo().uid === 0 ? ['runuser', ['-u', 'postgres', '--', path, ...args]] : [path, args];
}

async function pg(cores: number[] | null, binary: string, args: string[]): Promise<void> {
  const [cmd, argv] = pinned(cores, ...asServerUser(binary, args));
  try {
    await run(cmd, argv, { timeout: 120_000 });
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`${binary} failed: ${e.message}\n${e.stderr ?? ''}`, { cause: err });
  }
}

/**
 * A private PostgreSQL 15 for one benchmark invocation, started under `taskset` so the
 * postmaster and every backend it forks stay on `cores`. fsync stays on (a deployment's
 * commits pay for it, and direct mode commits per request); the data directory is removed after.
 */
export async function startBenchPostgres(cores: number[] | null): Promise<PrivateServer> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'safepkg-bench-pg-'));
  const data = join(dir, 'data');
  if (userInfo().uid === 0) {
    const uid = Number((await run('id', ['-u', 'postgres'])).stdout.trim());
    const gid = Number((await run('id', ['-g', 'postgres'])).stdout.trim());
    chownSync(dir, uid, gid);
  }
  const settings = [
    'shared_buffers=256MB',
    'max_connections=200',
    'listen_addresses=127.0.0.1',
    `unix_socket_directories=${dir}`,
  ];
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
  try {
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
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const pid = Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    pid,
    settings,
    async remove() {
      await pg(null, 'pg_ctl', ['-D', data, '-m', 'immediate', '-w', '-t', '60', 'stop']).catch(
        () => undefined,
      );
      rmSync(dir, { recursive: true, force: true });
    },
  };
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
): Promise<{ postgres: PrivateServer; redis: PrivateServer }> {
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
