import type { PackageRef } from '@safepkg/core';
import { contextEnv, startApp, useTestContext, waitFor, type RunningApp } from '@safepkg/testkit';
import { check, countPackages, generateRequests, sendConcurrently, storedState } from '../src/roundtrip';

const ctx = useTestContext({ bufferPartitions: 8, flushIntervalMs: 200, flushBatchSize: 5000 });
let api: RunningApp;
let flusher: RunningApp;

beforeAll(async () => {
  const env = contextEnv(ctx.config, { LOG_LEVEL: 'warn' });
  [api, flusher] = await Promise.all([startApp('api', env), startApp('flusher', env)]);
});

afterAll(async () => {
  await Promise.all([api?.kill('SIGTERM'), flusher?.kill('SIGTERM')]);
});

async function bufferDepth(): Promise<number> {
  let depth = 0;
  for (let p = 0; p < ctx.config.bufferPartitions; p++)
    depth += await ctx.redis.zcard(ctx.keys.partition(p).pending);
  return depth;
}

test('52,000 checks from concurrent clients end as exactly the distinct set in PostgreSQL, each queued once', async () => {
  const { requests, distinct } = generateRequests({
    requests: 520,
    perRequest: 100,
    distinct: 15_000,
    namespace: 'e2e',
  });
  expect(await sendConcurrently(api.url, requests, 8)).toBe(52_000);

  await waitFor(
    async () => (await countPackages(ctx.db.pool)) === distinct.size && (await bufferDepth()) === 0,
    {
      timeoutMs: 60000,
      intervalMs: 200,
      what: 'the buffer to drain',
    },
  );

  const state = await storedState(ctx.db.pool);
  expect(new Set(state.storedKeys).size).toBe(state.storedKeys.length);
  expect(state.storedKeys.sort()).toEqual([...distinct.keys()].sort());
  expect(state).toMatchObject({ queued: distinct.size, queuedDistinct: distinct.size, orphans: 0 });
  expect(await bufferDepth()).toBe(0);

  const all: PackageRef[] = [...distinct.values()];
  for (let i = 0; i < all.length; i += 1000) {
    const results = await check(api.url, all.slice(i, i + 1000));
    expect(results.filter((r) => !r.known || r.pending)).toEqual([]);
  }
});
