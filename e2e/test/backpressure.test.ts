import { packageKey, partitionOf, type PackageRef } from '@safepkg/core';
import { contextEnv, pkg, startApp, useTestContext, waitFor, type RunningApp } from '@safepkg/testkit';
import { auditBuffer, auditStored, setDiff } from '../src/chaos-audit';
import { postCheck } from '../src/chaos-client';

// Two partitions sharing MAX_BUFFER_DEPTH=20: each may hold 10 entries.
const ctx = useTestContext({ bufferPartitions: 2, maxBufferDepth: 20, flushIntervalMs: 100 });
let api: RunningApp;
let flusher: RunningApp | undefined;

beforeAll(async () => {
  api = await startApp('api', contextEnv(ctx.config, { LOG_LEVEL: 'warn' }));
});

afterAll(async () => {
  await Promise.all([api?.kill('SIGTERM'), flusher?.kill('SIGTERM')]);
});

test('a full partition answers 503 buffer_full + Retry-After, keeps what it holds, and accepts the retry after a drain without duplicates', async () => {
  const audit = () => auditBuffer(ctx.redis, ctx.keys, ctx.config.bufferPartitions);
  // No flusher yet: fill the buffer one package per request until a partition refuses.
  const accepted: PackageRef[] = [];
  let refused: { ref: PackageRef; retryAfter: string | null } | undefined;
  for (let i = 0; i < 25 && !refused; i++) {
    const ref = pkg(i, 'backpressure');
    const res = await postCheck(api.url, [ref]);
    if (res.status === 200) {
      expect(res.results[0]).toMatchObject({ pending: true });
      accepted.push(ref);
    } else {
      expect(res).toMatchObject({ status: 503, errorCode: 'buffer_full' });
      refused = { ref, retryAfter: res.retryAfter };
    }
  }
  expect(refused).toBeDefined();
  const full = refused as { ref: PackageRef; retryAfter: string | null };
  expect(Number(full.retryAfter)).toBeGreaterThan(0);
  const fullPartition = partitionOf(packageKey(full.ref), 2);
  const inFull = accepted.filter((r) => partitionOf(packageKey(r), 2) === fullPartition);
  expect(inFull).toHaveLength(10);

  // What was buffered stays valid: every accepted package pending with its data, the refused one nowhere.
  const held = await audit();
  expect(setDiff(accepted.map(packageKey), held.pendingKeys)).toEqual({ missing: [], extra: [] });
  expect(held.pendingWithoutData).toEqual([]);
  expect(held.dataWithoutPending).toEqual([]);
  // Re-checking packages already pending adds nothing, so a full partition still answers them.
  const again = await postCheck(api.url, inFull);
  expect(again.status).toBe(200);
  expect(again.results.every((r) => r.pending)).toBe(true);

  // A request spanning both partitions while one is full is refused as a whole (the other
  // partition's part may already be buffered: the retry must not duplicate it).
  const otherPartition = Array.from({ length: 200 }, (_, i) => pkg(1000 + i, 'backpressure')).find(
    (r) => partitionOf(packageKey(r), 2) !== fullPartition,
  ) as PackageRef;
  const mixed = [otherPartition, full.ref];
  const mixedRes = await postCheck(api.url, mixed);
  expect(mixedRes).toMatchObject({ status: 503, errorCode: 'buffer_full' });

  flusher = await startApp('flusher', contextEnv(ctx.config, { LOG_LEVEL: 'warn' }));
  await waitFor(async () => (await audit()).pending === 0, { what: 'the flusher to drain the full buffer' });

  // The client retries: accepted now, and a second retry changes nothing.
  for (let attempt = 0; attempt < 2; attempt++) {
    const retry = await postCheck(api.url, mixed);
    expect(retry.status).toBe(200);
    expect(retry.results.every((r) => r.known || r.pending)).toBe(true);
  }
  await waitFor(async () => (await audit()).pending === 0, { what: 'the retried packages to be flushed' });
  const stored = await auditStored(ctx.db.pool);
  const sent = [...accepted, ...mixed].map(packageKey);
  expect(setDiff(sent, stored.stored)).toEqual({ missing: [], extra: [] });
  expect(stored).toMatchObject({
    rows: sent.length,
    queued: sent.length,
    queuedDistinct: sent.length,
    orphans: 0,
  });
});
