import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RedisClient } from './redis-client';

export type ScriptName =
  | 'buffer-add'
  | 'buffer-read'
  | 'buffer-confirm'
  | 'buffer-dead-letter'
  | 'buffer-redrive'
  | 'lease-renew'
  | 'lease-release'
  | 'cache-fill'
  | 'lsn-raise'
  | 'reports-add'
  | 'reports-take'
  | 'reports-clear'
  | 'retention-held';

interface LoadedScript {
  source: string;
  sha: string;
}

// Lua lives beside src/ and dist/ in the package, so one relative path serves both.
const LUA_DIR = join(__dirname, '..', 'lua');
const loaded = new Map<ScriptName, LoadedScript>();

function load(name: ScriptName): LoadedScript {
  let script = loaded.get(name);
  if (!script) {
    const source = readFileSync(join(LUA_DIR, `${name}.lua`), 'utf8');
    script = { source, sha: createHash('sha1').update(source).digest('hex') };
    loaded.set(name, script);
  }
  return script;
}

type Arg = string | number;
interface EvalCapable {
  evalsha(sha: string, numKeys: number, ...args: Arg[]): Promise<unknown>;
  eval(source: string, numKeys: number, ...args: Arg[]): Promise<unknown>;
}

/**
 * Runs a script by SHA and falls back to sending its source once when the server does
 * not have it yet (first call, restart, failover); Redis caches it from then on.
 */
export async function runScript(
  client: RedisClient,
  name: ScriptName,
  keys: readonly string[],
  args: readonly Arg[],
): Promise<unknown> {
  const { source, sha } = load(name);
  const runner = client as unknown as EvalCapable;
  try {
    return await runner.evalsha(sha, keys.length, ...keys, ...args);
  } catch (err) {
    if (err instanceof Error && err.message.startsWith('NOSCRIPT')) {
      return runner.eval(source, keys.length, ...keys, ...args);
    }
    throw err;
  }
}
