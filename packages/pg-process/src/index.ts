import { execFile } from 'node:child_process';
import { chownSync, mkdtempSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

// The testkit is consumed from source only and the bench runs from its built dist/, so what
// both need to run PostgreSQL's own binaries lives here, in a package that is built.
const run = promisify(execFile);

/** Where Debian/Ubuntu put the PostgreSQL 15 server binaries; PG_BIN overrides it. */
export const PG_BIN = process.env.PG_BIN ?? '/usr/lib/postgresql/15/bin';

/**
 * PostgreSQL refuses to run as root: as root, its binaries run as the `postgres` OS user
 * (who owns the temporary directory); as anyone else, as that user.
 */
export function asServerUser(binary: string, args: string[]): [string, string[]] {
  const path = binary.startsWith('/') ? binary : join(PG_BIN, binary);
  return userInfo().uid === 0 ? ['runuser', ['-u', 'postgres', '--', path, ...args]] : [path, args];
}

export interface PgBinaryOptions {
  timeoutMs?: number;
  /** Run under `taskset -c`: the process (and a postmaster's every backend, forked) stays there. */
  cores?: readonly number[] | null;
}

export async function runPgBinary(
  binary: string,
  args: string[],
  { timeoutMs = 60_000, cores = null }: PgBinaryOptions = {},
): Promise<string> {
  const [cmd, argv] = asServerUser(binary, args);
  const [command, argvPinned] = cores ? ['taskset', ['-c', cores.join(','), cmd, ...argv]] : [cmd, argv];
  try {
    const { stdout } = await run(command, argvPinned, { timeout: timeoutMs });
    return stdout;
  } catch (err) {
    const e = err as Error & { stderr?: string; stdout?: string };
    throw new Error(`${binary} ${args.join(' ')} failed: ${e.message}\n${e.stderr ?? ''}${e.stdout ?? ''}`, {
      cause: err,
    });
  }
}

/** A temporary directory the server's OS user owns (PostgreSQL refuses to run as root). */
export async function serverDirectory(prefix: string): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  if (userInfo().uid === 0) {
    const { stdout } = await run('id', ['-u', 'postgres']);
    const { stdout: gid } = await run('id', ['-g', 'postgres']);
    chownSync(dir, Number(stdout.trim()), Number(gid.trim()));
  }
  return dir;
}

/**
 * A streaming replica's data directory: `pg_basebackup -R` of the running primary on
 * 127.0.0.1:`primaryPort` into `data` (which must not exist yet; its parent belongs to the
 * server's OS user). `-R` writes `primary_conninfo` and `standby.signal`, so a server started
 * on `data` is a hot standby streaming from the primary. The primary needs initdb's defaults
 * (wal_level replica, max_wal_senders 10, trust for replication from 127.0.0.1); the standby
 * must be started with max_connections (and the other hot-standby limits) at least the
 * primary's, or it refuses to start.
 */
export async function baseBackupStandby(options: {
  primaryPort: number;
  data: string;
  timeoutMs?: number;
}): Promise<void> {
  await runPgBinary(
    'pg_basebackup',
    [
      '-D',
      options.data,
      '-R',
      '-X',
      'stream',
      // Without it the backup waits for a spread checkpoint (minutes on an idle server).
      '--checkpoint=fast',
      '--no-sync',
      '-h',
      '127.0.0.1',
      '-p',
      String(options.primaryPort),
      '-U',
      'postgres',
    ],
    { timeoutMs: options.timeoutMs ?? 120_000 },
  );
}
