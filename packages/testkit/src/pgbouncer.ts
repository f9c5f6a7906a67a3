import { execFileSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { asServerUser, serverDirectory } from './postgres-server';
import { freePort, startProcess, waitFor, type ManagedProcess } from './processes';
import { Client } from 'pg';

/** One `[databases]` entry: a name clients connect to, forwarded to a real database. */
export interface PoolerDatabase {
  /** What clients put in their URL's path. */
  alias: string;
  port: number;
  dbname: string;
  /** Run on every new server connection (e.g. the app's SET statement_timeout). */
  connectQuery?: string;
}

export interface Pgbouncer {
  port: number;
  /** `postgres://postgres@127.0.0.1:<port>/<alias>` */
  url(alias: string): string;
  /** Output of `SHOW <what>` on the admin console (pools, servers, clients, config …). */
  show(what: string): Promise<Record<string, unknown>[]>;
  /** SIGKILL: the pooler's host died; its clients' connections drop. */
  kill(): Promise<void>;
  /** Starts it again on the same port and config. */
  start(): Promise<void>;
  remove(): Promise<void>;
  output(): string;
}

/**
 * The pgbouncer binary (Debian's package; `.ci/run` installs it). A test that needs it fails
 * here when it is missing instead of skipping.
 */
export function pgbouncerBinary(): string {
  for (const path of ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer']) {
    try {
      execFileSync(path, ['--version'], { stdio: 'ignore' });
      return path;
    } catch {
      // try the next location
    }
  }
  throw new Error('pgbouncer is not installed (apt-get install -y pgbouncer; .ci/run does it)');
}

function childPids(pid: number | undefined): number[] {
  if (pid === undefined) return [];
  try {
    return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' })
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

const quote = (v: string) => `'${v.replace(/'/g, "''")}'`;

/**
 * A private pgbouncer in transaction pooling mode (the mode that multiplexes many app
 * connections over few server connections, and the one whose rules the apps must follow).
 * No ignore_startup_parameters: a client sending a session setting pgbouncer cannot track
 * (statement_timeout …) is refused at connect, so a test through it proves the apps send none.
 */
export async function startPgbouncer(
  databases: readonly PoolerDatabase[],
  options: { poolSize?: number } = {},
): Promise<Pgbouncer> {
  const binary = pgbouncerBinary();
  const port = await freePort();
  const dir = await serverDirectory('safepkg-pgbouncer-');
  const ini = join(dir, 'pgbouncer.ini');
  const dbLines = databases.map(
    (d) =>
      `${d.alias} = host=127.0.0.1 port=${d.port} dbname=${d.dbname} user=postgres` +
      (d.connectQuery ? ` connect_query=${quote(d.connectQuery)}` : ''),
  );
  writeFileSync(
    ini,
    [
      '[databases]',
      ...dbLines,
      '',
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      `unix_socket_dir = ${dir}`,
      'auth_type = trust',
      `auth_file = ${join(dir, 'userlist.txt')}`,
      'admin_users = postgres',
      'pool_mode = transaction',
      `default_pool_size = ${options.poolSize ?? 4}`,
      'max_client_conn = 500',
      'server_reset_query =',
      '',
    ].join('\n'),
    { mode: 0o644 },
  );
  writeFileSync(join(dir, 'userlist.txt'), '"postgres" ""\n', { mode: 0o644 });

  let proc: ManagedProcess | undefined;
  const start = async () => {
    const [cmd, argv] = asServerUser(binary, [ini]);
    const p = startProcess(cmd, argv, { PATH: process.env.PATH ?? '/usr/bin:/bin' });
    proc = p;
    await waitFor(
      async () => {
        if (p.child.exitCode !== null) throw new Error(`pgbouncer exited: ${p.output()}`);
        const c = new Client({ connectionString: `postgres://postgres@127.0.0.1:${port}/pgbouncer` });
        await c.connect();
        await c.end();
        return true;
      },
      { what: 'pgbouncer accepting connections', timeoutMs: 15000 },
    );
  };
  const kill = async () => {
    const p = proc;
    if (!p || p.child.exitCode !== null || p.child.signalCode !== null) return;
    // As root the pooler runs under runuser, which cannot forward SIGKILL: kill its child too.
    const children = userInfo().uid === 0 ? childPids(p.child.pid) : [];
    for (const pid of children) process.kill(pid, 'SIGKILL');
    await p.kill('SIGKILL');
  };
  await start();

  return {
    port,
    url: (alias) => `postgres://postgres@127.0.0.1:${port}/${alias}`,
    async show(what) {
      // The admin console speaks only the simple query protocol: no parameters.
      const c = new Client({ connectionString: `postgres://postgres@127.0.0.1:${port}/pgbouncer` });
      await c.connect();
      try {
        return (await c.query(`SHOW ${what.replace(/[^A-Za-z_]/g, '')}`)).rows as Record<string, unknown>[];
      } finally {
        await c.end();
      }
    },
    kill,
    start,
    async remove() {
      await kill().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
    output: () => proc?.output() ?? '',
  };
}
