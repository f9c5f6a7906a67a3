import { KeySchema, packageKey, type PackageRef } from '@safepkg/core';
import {
  clusterClient,
  contextEnv,
  startApp,
  startRedisCluster,
  storedReports,
  totalStoredReports,
  useTestContext,
  waitFor,
  type RedisClusterHandle,
  type RunningApp,
} from '@safepkg/testkit';
import keySlot from 'cluster-key-slot';
import type { Cluster } from 'ioredis';
import { check, countPackages, generateRequests, sendConcurrently, storedState } from '../src/roundtrip';

const ctx = useTestContext({ bufferPartitions: 16, flushIntervalMs: 200 });
let cluster: RedisClusterHandle;
let client: Cluster;
let api: RunningApp;
let flusher: RunningApp;

beforeAll(async () => {
  cluster = await startRedisCluster(3);
  client = clusterClient(cluster);
  const env = contextEnv(ctx.config, {
    LOG_LEVEL: 'warn',
    REDIS_CLUSTER_NODES: cluster.nodesEnv,
    REDIS_URL: '',
  });
  [api, flusher] = await Promise.all([startApp('api', env), startApp('flusher', env)]);
});

afterAll(async () => {
  await Promise.all([api?.kill('SIGTERM'), flusher?.kill('SIGTERM')]);
  client?.disconnect();
  await cluster?.stop();
});

async function bufferDepth(keys: KeySchema): Promise<number> {
  let depth = 0;
  for (let p = 0; p < ctx.config.bufferPartitions; p++)
    depth += await client.zcard(keys.partition(p).pending);
  return depth;
}

test('on a 3-master Redis Cluster: partitions spread over the masters, and the round trip loses nothing', async () => {
  const keys = new KeySchema(ctx.config.keyPrefix);
  const { requests, distinct } = generateRequests({
    requests: 200,
    perRequest: 100,
    distinct: 8_000,
    namespace: 'cluster',
  });

  expect(await sendConcurrently(api.url, requests, 6)).toBe(20_000);

  // Every partition's keys share one slot, and the 16 partition slots land on all 3 masters.
  const ownerOf = await slotOwners();
  const owners = new Set<string>();
  for (let p = 0; p < ctx.config.bufferPartitions; p++) {
    const k = keys.partition(p);
    const slots = new Set([k.seq, k.pending, k.data, k.lock, k.dead].map((key) => keySlot(key)));
    expect(slots.size).toBe(1);
    owners.add(ownerOf([...slots][0] as number));
  }
  expect(owners.size).toBe(3);

  await waitFor(
    async () => (await countPackages(ctx.db.pool)) === distinct.size && (await bufferDepth(keys)) === 0,
    {
      timeoutMs: 60000,
      intervalMs: 200,
      what: 'the buffer to drain',
    },
  );
  const state = await storedState(ctx.db.pool);
  expect(state.storedKeys.sort()).toEqual([...distinct.keys()].sort());
  expect(state).toMatchObject({ queued: distinct.size, queuedDistinct: distinct.size, orphans: 0 });

  // Reports on a cluster (written per check, one call per partition): every package's count is
  // the number of requests that carried it, once per request.
  const expected = new Map<string, number>();
  for (const body of requests)
    for (const key of new Set(body.map(packageKey))) expected.set(key, (expected.get(key) ?? 0) + 1);
  const total = [...expected.values()].reduce((a, b) => a + b, 0);
  await waitFor(async () => (await totalStoredReports(ctx.db.pool)) === total, {
    timeoutMs: 60000,
    intervalMs: 200,
    what: 'every report to be flushed',
  });
  const stored = await storedReports(ctx.db.pool);
  expect(new Map([...stored].map(([key, r]) => [key, r.reports]))).toEqual(expected);

  const all: PackageRef[] = [...distinct.values()].slice(0, 1000);
  const results = await check(api.url, all);
  expect(results.filter((r) => !r.known)).toEqual([]);
});

/** The master (host:port) serving a slot, from CLUSTER SLOTS. */
async function slotOwners(): Promise<(slot: number) => string> {
  const ranges = await client.cluster('SLOTS');
  return (slot) => {
    const master = ranges.find(([from, to]) => slot >= from && slot <= to)?.[2];
    if (!master) throw new Error(`no owner for slot ${slot}`);
    return `${master[0]}:${master[1]}`;
  };
}

test('resharding a master away while entries are buffered moves them with their partitions; the flusher drains them all', async () => {
  const { execFile } = await import('node:child_process');
  const { promisify } = await import('node:util');
  const run = promisify(execFile);
  const keys = new KeySchema(ctx.config.keyPrefix);

  await flusher.kill('SIGTERM');
  const { requests, distinct } = generateRequests({
    requests: 50,
    perRequest: 100,
    distinct: 3_000,
    namespace: 'reshard',
  });
  await sendConcurrently(api.url, requests, 4);
  const before = await bufferDepth(keys);
  expect(before).toBe(distinct.size);

  // Move every slot of the first master to the second (keys go with them, by MIGRATE).
  const [from, to] = cluster.servers;
  if (!from || !to) throw new Error('cluster has fewer than 2 masters');
  const id = async (port: number) =>
    (await run('redis-cli', ['-p', String(port), 'cluster', 'myid'])).stdout.trim();
  const slotsOfFrom = (await client.cluster('SLOTS'))
    .filter((r) => r[2]?.[1] === from.port)
    .reduce((n, [a, b]) => n + (b - a + 1), 0);
  await run(
    'redis-cli',
    [
      '--cluster',
      'reshard',
      `127.0.0.1:${from.port}`,
      '--cluster-from',
      await id(from.port),
      '--cluster-to',
      await id(to.port),
      '--cluster-slots',
      String(slotsOfFrom),
      '--cluster-yes',
    ],
    { timeout: 60000 },
  );
  await waitFor(async () => (await client.cluster('SLOTS')).every((r) => r[2]?.[1] !== from.port), {
    what: 'the first master to own no slot',
  });
  expect(await bufferDepth(keys)).toBe(before);

  flusher = await startApp(
    'flusher',
    contextEnv(ctx.config, { LOG_LEVEL: 'warn', REDIS_CLUSTER_NODES: cluster.nodesEnv, REDIS_URL: '' }),
  );
  await waitFor(async () => (await bufferDepth(keys)) === 0, {
    timeoutMs: 60000,
    what: 'the buffer to drain after resharding',
  });
  const state = await storedState(ctx.db.pool);
  const stored = new Set(state.storedKeys);
  expect([...distinct.keys()].filter((k) => !stored.has(k))).toEqual([]);
  expect(state.queued).toBe(state.storedKeys.length);
});
