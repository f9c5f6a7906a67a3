import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import {
  KeySchema,
  RedisBuffer,
  ReportBuffer,
  ReportCoalescer,
  ResultCache,
  packageKey,
  type CachedStatus,
} from '@safepkg/core';
import { benchCatalogue, Catalogue } from './catalogue';
import { startBenchRedis } from './private-servers';
import { Random } from './random';
import { planTopology } from './topology';

const USAGE = `usage: node dist/redis-cost.js [--seconds=S] [--concurrency=N] [--packages=N]`;

/**
 * Redis CPU per check request of each Redis step of the check path, from Redis's own
 * `used_cpu_user + used_cpu_sys` (INFO cpu) around a closed loop of that step alone, against a
 * private redis-server pinned to the core the benchmark gives Redis. The steps are the real
 * module calls (ResultCache.getMany, RedisBuffer.add, ReportBuffer.add, the api's ReportCoalescer
 * and the pending lookup),
 * 100 packages per request drawn like the device stream's known apps (Zipf over 200,000), so
 * hash sizes and repeats look like a long run's. What it answers: which step Redis pays for,
 * independent of the api's CPU and of anything else on the machine.
 */
async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '4' },
      concurrency: { type: 'string', default: '32' },
      packages: { type: 'string', default: '100' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const seconds = Number(values.seconds);
  const concurrency = Number(values.concurrency);
  const perRequest = Number(values.packages);
  const topology = planTopology('split');
  const server = await startBenchRedis(topology.redis);
  const redis = new Redis(server.url);
  try {
    const keys = new KeySchema('rediscost');
    const partitions = 16;
    const catalogue = new Catalogue(benchCatalogue(20260101));
    const rng = new Random(7);
    const request = () =>
      Array.from({ length: perRequest }, () => packageKey(catalogue.known(catalogue.knownZipf.sample(rng))));
    const cache = new ResultCache(redis, keys, 3600);
    const buffer = new RedisBuffer(redis, keys, partitions, 1_000_000_000);
    const reports = new ReportBuffer(redis, keys, partitions);
    const coalescer = new ReportCoalescer(reports);
    const cached: CachedStatus = {
      rev: 1,
      verdict: 'safe',
      source: 'model',
      threatIndex: 0.1,
      firstSeenAt: 0,
    };
    let tail = 0;
    const fresh = () =>
      Array.from({ length: perRequest }, () => `org.cost.tail${tail++}:1:${'c'.repeat(64)}`);

    // Every key of these cached, so the counting read below always counts.
    const pool = Array.from({ length: 200 }, request).flat();
    await cache.fill(pool.map((key) => ({ key, status: cached })));
    // Distinct, as the api sends a check's packages.
    const fromPool = () => {
      const k = new Set<string>();
      while (k.size < perRequest) k.add(pool[rng.int(pool.length)] as string);
      return [...k];
    };
    let uncounted = 0;

    const steps: [string, () => Promise<unknown>][] = [
      ['cache MGET (hit path)', () => cache.getMany(request())],
      [
        'cache read + count, one script (hit path, all cached)',
        async () => {
          const k = fromPool();
          const read = await cache.readCounting(k, [], reports.countTarget(k), Date.now());
          if (!read.counted) uncounted++;
        },
      ],
      ['cache fill (rev-guarded)', () => cache.fill(request().map((key) => ({ key, status: cached })))],
      ['buffer pending lookup', () => buffer.pendingSince(request())],
      ['buffer add (all new)', () => buffer.add(fresh().map((key) => ({ key, payload: { t: Date.now() } })))],
      ['reports add (one call per check)', () => reports.add(request(), Date.now())],
      // What the api does: the checks in flight together share one write (group commit).
      [
        `reports add (coalesced, ${concurrency} checks in flight)`,
        () => coalescer.add(request(), Date.now()),
      ],
    ];
    console.log(
      `Redis ${server.url} on cores ${JSON.stringify(topology.redis)}; ${perRequest} packages/request, ${concurrency} in flight, ${seconds} s per step`,
    );
    console.log('| step | requests/s | Redis µs CPU/request | Redis µs CPU/package |');
    console.log('|---|---:|---:|---:|');
    for (const [name, step] of steps) {
      const before = await redisCpuMs(redis);
      const start = Date.now();
      let done = 0;
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (Date.now() - start < seconds * 1000) {
            await step();
            done++;
          }
        }),
      );
      const cpuUs = ((await redisCpuMs(redis)) - before) * 1000;
      const wallS = (Date.now() - start) / 1000;
      console.log(
        `| ${name} | ${Math.round(done / wallS)} | ${(cpuUs / done).toFixed(1)} | ${(cpuUs / done / perRequest).toFixed(2)} |`,
      );
    }
    if (uncounted > 0) console.log(`(the counting read did not count ${uncounted} times: not all cached)`);
  } finally {
    redis.disconnect();
    await server.remove();
  }
}

async function redisCpuMs(redis: Redis): Promise<number> {
  const info = await redis.info('cpu');
  const field = (name: string) => Number(new RegExp(`${name}:([\\d.]+)`).exec(info)?.[1] ?? 0);
  return (field('used_cpu_user') + field('used_cpu_sys')) * 1000;
}

main().catch((err: unknown) => {
  console.error('redis-cost failed:', err);
  process.exit(1);
});
