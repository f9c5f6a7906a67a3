import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { pinned } from './topology';

// bench runs from its built output (dist/), and @safepkg/testkit is consumed from source
// only (never built), so the few process helpers the benchmark needs live here.
const REPO_ROOT = join(__dirname, '..', '..');

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (addr && typeof addr === 'object' ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function waitFor<T>(
  fn: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  { timeoutMs = 20000, intervalMs = 50, what = 'condition' } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${String(lastError)}` : ''}`,
      );
    await sleep(intervalMs);
  }
}

/** The two apps, and the benchmark's floor server (bench/dist/floor-server.js). */
export type AppName = 'api' | 'flusher' | 'floor';

export interface AppProcess {
  app: AppName;
  child: ChildProcess;
  url: string;
  output(): string;
  /** SIGTERM (graceful: lets --cpu-prof write its profile), SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

/**
 * Starts a built app (apps/<app>/dist/main.js, or the floor server) on `cores` (any core when
 * null) and waits for its /healthz. taskset execs node, so `child.pid` is node's own pid.
 */
export async function startApp(
  app: AppName,
  env: NodeJS.ProcessEnv,
  nodeArgs: string[] = [],
  cores: number[] | null = null,
  /** Another build's main.js instead (the api comparison runs two). */
  script?: string,
): Promise<AppProcess> {
  const port = await freePort();
  const portEnv = app === 'flusher' ? { FLUSHER_PORT: String(port) } : { PORT: String(port) };
  script ??=
    app === 'floor' ? join(__dirname, 'floor-server.js') : join(REPO_ROOT, 'apps', app, 'dist', 'main.js');
  const [cmd, argv] = pinned(cores, process.execPath, [...nodeArgs, script]);
  const child = spawn(cmd, argv, {
    env: { ...env, ...portEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const keep = (b: Buffer) => {
    out += b.toString();
    if (out.length > 100_000) out = out.slice(-100_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  const proc: AppProcess = {
    app,
    child,
    url,
    output: () => out,
    async stop(graceMs = 10000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
  try {
    await waitFor(
      async () => {
        if (child.exitCode !== null) throw new Error(`${app} exited with ${child.exitCode}`);
        return (await fetch(`${url}/healthz`)).ok;
      },
      { what: `${app} /healthz`, timeoutMs: 20000 },
    );
  } catch (err) {
    child.kill('SIGKILL');
    throw new Error(`${(err as Error).message}\n--- ${app} output ---\n${out}`, { cause: err });
  }
  return proc;
}
