import { request } from 'node:http';
import { packageKey, type PackageRef } from '@safepkg/core';
import { contextEnv, pkgs, startApp, useTestContext, waitFor, type RunningApp } from '@safepkg/testkit';
import { auditBuffer, auditStored, setDiff } from '../src/chaos-audit';
import { checkUntilAccepted } from '../src/chaos-client';
import { generateRequests } from '../src/roundtrip';

const ctx = useTestContext({ bufferPartitions: 8, flushIntervalMs: 100 });
const started: RunningApp[] = [];

afterAll(async () => {
  await Promise.all(started.map((a) => a.kill('SIGKILL')));
});

async function start(app: 'api' | 'flusher'): Promise<RunningApp> {
  const running = await startApp(app, contextEnv(ctx.config, { LOG_LEVEL: 'warn' }));
  started.push(running);
  return running;
}

test('api killed with SIGKILL under load: the buffer stays consistent, clients retry, nothing accepted is lost', async () => {
  let api = await start('api');
  const { requests, distinct } = generateRequests({
    requests: 240,
    perRequest: 100,
    distinct: 6000,
    namespace: 'apikill',
  });
  const deadline = Date.now() + 120_000;
  let next = 0;
  let answered = 0;
  let retried = 0;
  const load = Promise.all(
    Array.from({ length: 6 }, async () => {
      while (next < requests.length) {
        const body = requests[next++] as PackageRef[];
        const { response, attempts } = await checkUntilAccepted(() => api.url, body, deadline);
        expect(response.results.map(packageKey)).toEqual(body.map(packageKey));
        if (attempts > 1) retried++;
        answered++;
      }
    }),
  );

  // No flusher while the api dies, so nothing but the api writes the buffer: an audit right
  // after the kill sees exactly what the dead process left behind.
  for (const after of [40, 100, 160]) {
    await waitFor(() => answered >= after, { what: `${after} answered checks`, intervalMs: 5 });
    await api.kill('SIGKILL');
    const left = await auditBuffer(ctx.redis, ctx.keys, ctx.config.bufferPartitions);
    expect(left.pendingWithoutData).toEqual([]);
    expect(left.dataWithoutPending).toEqual([]);
    api = await start('api');
  }
  await load;
  expect(answered).toBe(requests.length);
  // At least one request was cut off by a kill and retried by its client.
  expect(retried).toBeGreaterThan(0);

  await start('flusher');
  await waitFor(
    async () => (await auditBuffer(ctx.redis, ctx.keys, ctx.config.bufferPartitions)).pending === 0,
    {
      timeoutMs: 60000,
      intervalMs: 200,
      what: 'the buffer to drain',
    },
  );
  const stored = await auditStored(ctx.db.pool);
  expect(setDiff(distinct.keys(), stored.stored)).toEqual({ missing: [], extra: [] });
  expect(stored).toMatchObject({
    rows: distinct.size,
    queued: distinct.size,
    queuedDistinct: distinct.size,
    orphans: 0,
  });
});

test('SIGTERM: the api stops accepting, finishes the in-flight request with 200, and exits 0', async () => {
  const api = await start('api');
  const body = Buffer.from(JSON.stringify({ packages: pkgs(0, 20, 'graceful') }));
  const half = Math.floor(body.length / 2);
  // A slow client: the request is in flight (headers and half of the body sent) when SIGTERM arrives.
  const req = request(`${api.url}/v1/packages/check`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'content-length': String(body.length) },
  });
  const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
    req.on('response', (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
  });
  req.flushHeaders();
  req.write(body.subarray(0, half));
  // The server must have read the headers, or the request is not yet in flight for it.
  await new Promise((r) => setTimeout(r, 300));

  api.child.kill('SIGTERM');
  // It stops accepting: new connections are refused while the slow request is still open.
  await waitFor(
    async () => {
      try {
        await fetch(`${api.url}/healthz`, { signal: AbortSignal.timeout(1000) });
        return false;
      } catch {
        return true;
      }
    },
    { what: 'the api to stop accepting connections' },
  );
  expect(api.child.exitCode).toBeNull();

  req.end(body.subarray(half));
  const res = await answer;
  expect(res.status).toBe(200);
  expect((JSON.parse(res.body) as { results: unknown[] }).results).toHaveLength(20);
  expect(await api.exited).toEqual({ code: 0, signal: null });
});
