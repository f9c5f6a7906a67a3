import { join } from 'node:path';
import { freePort, startProcess, waitFor, type ManagedProcess } from './processes';

const REPO_ROOT = join(__dirname, '..', '..', '..');

export interface RunningApp extends ManagedProcess {
  port: number;
  url: string;
}

/**
 * Starts the built api or flusher (`npm run build` first; turbo's test task depends on
 * it) as a real child process and waits until its /healthz answers.
 */
export async function startApp(app: 'api' | 'flusher', env: NodeJS.ProcessEnv): Promise<RunningApp> {
  const port = await freePort();
  const portEnv = app === 'api' ? { PORT: String(port) } : { FLUSHER_PORT: String(port) };
  const proc = startProcess(process.execPath, [join(REPO_ROOT, 'apps', app, 'dist', 'main.js')], {
    ...env,
    ...portEnv,
  });
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitFor(
      async () => {
        if (proc.child.exitCode !== null) throw new Error(`${app} exited with ${proc.child.exitCode}`);
        return (await fetch(`${url}/healthz`)).ok;
      },
      { what: `${app} /healthz`, timeoutMs: 15000 },
    );
  } catch (err) {
    await proc.kill();
    throw new Error(`${(err as Error).message}\n--- ${app} output ---\n${proc.output()}`, { cause: err });
  }
  return { ...proc, port, url };
}
