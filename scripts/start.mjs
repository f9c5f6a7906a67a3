// `npm start`: checks PostgreSQL and Redis answer, creates and migrates the database,
// then runs the api and the flusher from their built output until Ctrl-C.
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const core = require(join(root, 'packages/core/dist/index.js'));

const config = core.loadConfig(process.env);
const pool = core.createPool(config, 'safepkg-start', 1);
const redis = core.createRedisClient(config, { maxRetriesPerRequest: 0 });
redis.on('error', () => undefined); // reported once, below, by assertReachable
try {
  // A missing database is not a dead server: create it, then check the server answers.
  await core.ensureDatabase(config.databaseUrl).catch(() => undefined);
  await core.assertReachable(config, pool, redis);
  const applied = await core.migrate(config.databaseUrl);
  console.log(applied.length ? `migrations applied: ${applied.join(', ')}` : 'database is up to date');
} catch (err) {
  console.error(`safepkg: ${err.message}`);
  process.exit(1);
} finally {
  await pool.end().catch(() => undefined);
  redis.disconnect();
}

const children = ['api', 'flusher'].map((app) =>
  spawn(process.execPath, [join(root, 'apps', app, 'dist', 'main.js')], {
    stdio: 'inherit',
    env: process.env,
  }),
);
let stopping = false;
const stop = (signal) => {
  if (stopping) return;
  stopping = true;
  for (const c of children) if (c.exitCode === null) c.kill(signal);
};
process.on('SIGINT', () => stop('SIGTERM'));
process.on('SIGTERM', () => stop('SIGTERM'));
for (const c of children) {
  c.on('exit', (code) => {
    if (!stopping) {
      console.error(`safepkg: a process exited (code ${code}); stopping the other`);
      stop('SIGTERM');
      process.exitCode = code ?? 1;
    }
  });
}
