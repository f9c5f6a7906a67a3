import { join } from 'node:path';
import type { CatalogueOptions } from './catalogue';
import type { Topology } from './topology';

/** What every part of one benchmark invocation shares. */
export interface BenchEnv {
  quick: boolean;
  redisUrl: string;
  /** KEY_PREFIX of the benchmark's own keys on the shared Redis. */
  keyPrefix: string;
  template: string;
  /** Rows in `packages` right after a reset (the seeded known catalogue). */
  seedRows: number;
  catalogue: CatalogueOptions;
  apiProcesses: number;
  packagesPerDevice: number;
  seed: number;
  /** Where the apps run (cores, private or shared servers). */
  topology: Topology;
  /** The private PostgreSQL's postmaster, whose process tree's CPU is measured; null on the shared server. */
  postgresPid: number | null;
  /** Directory for .cpuprofile files when profiling, else null. */
  profileDir: string | null;
  /** False: the api processes do not count reports (SAFEPKG_TEST_NO_REPORTS=1), the baseline of their cost. */
  countReports: boolean;
  /** False: every cache miss is looked up in PostgreSQL (PENDING_ANSWER_MAX_AGE_MS=0), the baseline. */
  pendingAnswers: boolean;
  log: (message: string) => void;
}

export const RESULTS_DIR = join(__dirname, '..', 'results');

/** The environment of a child api/flusher: only what it needs, on the benchmark's database and prefix. */
export function appEnv(
  env: BenchEnv,
  databaseUrl: string,
  extra: Record<string, string> = {},
): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    DATABASE_URL: databaseUrl,
    REDIS_URL: env.redisUrl,
    KEY_PREFIX: env.keyPrefix,
    // One client sends every request here; a per-client limit would measure the limiter.
    RATE_LIMIT_POINTS: '0',
    LOG_LEVEL: 'warn',
    ...(env.countReports ? {} : { SAFEPKG_TEST_NO_REPORTS: '1' }),
    ...(env.pendingAnswers ? {} : { PENDING_ANSWER_MAX_AGE_MS: '0' }),
    ...extra,
  };
}
