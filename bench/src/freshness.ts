import { Client } from 'pg';
import { pgUrl, BENCH_DATABASE, resetBenchDatabase } from './bench-database';
import type { BenchEnv } from './bench-env';
import { Catalogue } from './catalogue';
import { DeviceSimulator } from './devices';
import { bufferDepth } from './buffer-state';
import { startStack } from './ingest-run';
import { runLoad, type LoadResult } from './load';
import { sleep, startApp } from './processes';
import { appEnv } from './bench-env';
import { configDefaults, packageKey, RedisBuffer } from '@safepkg/core';
import { Random } from './random';
import { KeySchema } from '@safepkg/core';
import { Redis } from 'ioredis';
import { deletePrefix } from './redis-prefix';

export interface FreshnessResult {
  /** api: devices check through the api processes; buffer: fed straight into RedisBuffer (flusher lag alone). */
  source: 'api' | 'buffer';
  offeredNewPerS: number;
  /** New packages per second that really entered the buffer. */
  achievedNewPerS: number;
  load: LoadResult | null;
  rowsObserved: number;
  pollIntervalMs: number;
  lagMs: { p50: number; p90: number; p99: number; max: number };
}

const BUCKET_MS = 10;

/**
 * Freshness lag = (time a poller first sees the row in PostgreSQL) − first_seen_at (the
 * api's clock when the check arrived). A poller reads rows with id above the last one
 * seen every `pollIntervalMs` and has PostgreSQL bucket `clock_timestamp() − first_seen_at`
 * into 10 ms buckets. Trigger-free and schema-free; one flusher commits batches one after
 * another, so ids become visible in order. The poll interval bounds the overestimate.
 */
export async function runFreshness(
  env: BenchEnv,
  source: 'api' | 'buffer',
  newPerS: number,
  durationS: number,
  pollIntervalMs = 100,
): Promise<FreshnessResult> {
  const redis = new Redis(env.redisUrl);
  const keys = new KeySchema(env.keyPrefix);
  await deletePrefix(redis, env.keyPrefix);
  const databaseUrl = await resetBenchDatabase(env.template);
  const stack =
    source === 'api'
      ? await startStack(env, databaseUrl, 'buffered', 'freshness')
      : {
          apis: [],
          flusher: await startApp('flusher', appEnv(env, databaseUrl), [], env.topology.flusher),
          stop: async () => undefined,
        };
  const poller = new Client({ connectionString: pgUrl(BENCH_DATABASE) });
  await poller.connect();
  const histogram = new Map<number, number>();
  let lastId = env.seedRows;
  let polling = true;
  const poll = async () => {
    while (polling) {
      const { rows } = await poller.query<{ max_id: string; b: number; n: string }>(
        `WITH n AS (
           SELECT id, floor(extract(epoch FROM clock_timestamp() - first_seen_at) * 1000 / ${BUCKET_MS})::int AS b
             FROM packages WHERE id > $1)
         SELECT (SELECT max(id) FROM n) AS max_id, b, count(*) AS n FROM n GROUP BY b`,
        [lastId],
      );
      for (const r of rows) {
        histogram.set(r.b, (histogram.get(r.b) ?? 0) + Number(r.n));
        lastId = Math.max(lastId, Number(r.max_id));
      }
      await sleep(pollIntervalMs);
    }
  };
  const polled = poll();
  let load: LoadResult | null = null;
  let fed: number;
  try {
    const catalogue = new Catalogue(env.catalogue);
    if (source === 'api') {
      const rate = Math.round(newPerS / env.packagesPerDevice);
      const simulator = new DeviceSimulator(catalogue, {
        seed: env.seed + 5,
        stream: 'fresh',
        packagesPerDevice: env.packagesPerDevice,
        shares: { known: 0, hot: 0, tail: 1 },
      });
      load = await runLoad({
        urls: stack.apis.map((a) => a.url),
        durationS,
        connections: 32,
        overallRate: rate,
        simulator,
      });
      fed = load.ok * env.packagesPerDevice;
    } else {
      fed = await feedBuffer(env, redis, keys, catalogue, newPerS, durationS);
    }
    const ended = Date.now();
    while ((await bufferDepth(redis, keys)) > 0 && Date.now() - ended < 120_000) await sleep(100);
    await sleep(pollIntervalMs * 3);
  } finally {
    polling = false;
    await polled.catch(() => undefined);
    await poller.end();
    await stack.stop();
    await stack.flusher?.stop();
    await deletePrefix(redis, env.keyPrefix).catch(() => undefined);
    redis.disconnect();
  }
  const total = [...histogram.values()].reduce((a, b) => a + b, 0);
  const sorted = [...histogram].sort((a, b) => a[0] - b[0]);
  const pct = (p: number) => {
    let acc = 0;
    for (const [b, n] of sorted) {
      acc += n;
      if (acc >= (p / 100) * total) return (b + 1) * BUCKET_MS;
    }
    return Number.NaN;
  };
  return {
    source,
    offeredNewPerS: newPerS,
    achievedNewPerS: fed / durationS,
    load,
    rowsObserved: total,
    pollIntervalMs,
    lagMs: {
      p50: pct(50),
      p90: pct(90),
      p99: pct(99),
      max: ((sorted[sorted.length - 1]?.[0] ?? 0) + 1) * BUCKET_MS,
    },
  };
}

/** Adds never-seen packages straight into the buffer at `perS`, in 100 ms steps, stamped when added. */
async function feedBuffer(
  env: BenchEnv,
  redis: Redis,
  keys: KeySchema,
  catalogue: Catalogue,
  perS: number,
  durationS: number,
): Promise<number> {
  const buffer = new RedisBuffer(
    redis,
    keys,
    configDefaults().bufferPartitions,
    configDefaults().maxBufferDepth,
  );
  const rng = new Random(env.seed + 23);
  const stepMs = 100;
  const perStep = Math.round((perS * stepMs) / 1000);
  const start = Date.now();
  let n = 0;
  for (let step = 0; Date.now() - start < durationS * 1000; step++) {
    const t = Date.now();
    await buffer.add(
      Array.from({ length: perStep }, () => ({
        key: packageKey(catalogue.tail('feed', n++, rng)),
        payload: { t },
      })),
    );
    const wait = start + (step + 1) * stepMs - Date.now();
    if (wait > 0) await sleep(wait);
  }
  return n;
}
