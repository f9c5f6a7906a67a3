import { Redis } from 'ioredis';
import { freePort, pkg, useTestContext } from '@safepkg/testkit';
import { serveApp } from './helpers';

const ctx = useTestContext();
// The limiter hands a client that is not yet 'ready' to its in-process stand-in, as main.ts's
// start-up wait prevents in production; here the test context's client connects lazily.
beforeAll(() => ctx.redis.ping());

// Every request here comes from 127.0.0.1, so each test counts under its own key prefix.
let prefixes = 0;
const own = () => ({ keyPrefix: `${ctx.config.keyPrefix}_rl${prefixes++}` });

const body = { packages: [pkg(1, 'ratelimit')] };

async function statuses(
  over: Parameters<typeof serveApp>[1],
  headers: (i: number) => Record<string, string>,
  n: number,
): Promise<number[]> {
  const server = await serveApp(ctx, { ...own(), ...over });
  try {
    const out: number[] = [];
    for (let i = 0; i < n; i++)
      out.push((await server.request('POST', '/v1/packages/check', body, headers(i))).status);
    return out;
  } finally {
    await server.close();
  }
}

test('a client rotating X-Api-Key from one IP is limited once the IP budget for keyed requests is spent', async () => {
  const rotating = (i: number) => ({ 'x-api-key': `rotating-key-${i}` });
  expect(
    await statuses({ rateLimitPoints: 3, rateLimitIpPoints: 5, rateLimitWindowS: 60 }, rotating, 7),
  ).toEqual([200, 200, 200, 200, 200, 429, 429]);
  // RATE_LIMIT_IP_POINTS=0 lifts the per-IP cap: each fresh key is its own client.
  expect(
    await statuses({ rateLimitPoints: 3, rateLimitIpPoints: 0, rateLimitWindowS: 60 }, rotating, 7),
  ).toEqual([200, 200, 200, 200, 200, 200, 200]);
});

test('two keys behind one IP each get their own per-key budget below the IP cap; requests without a key have their own IP budget', async () => {
  const server = await serveApp(ctx, {
    ...own(),
    rateLimitPoints: 3,
    rateLimitIpPoints: 10,
    rateLimitWindowS: 60,
  });
  try {
    const send = async (headers: Record<string, string>) =>
      (await server.request('POST', '/v1/packages/check', body, headers)).status;
    const a = { 'x-api-key': 'device-a' };
    const b = { 'x-api-key': 'device-b' };
    const seen: number[] = [];
    for (const h of [a, a, a, a, b, b, b, b]) seen.push(await send(h));
    expect(seen).toEqual([200, 200, 200, 429, 200, 200, 200, 429]);
    const limited = await server.request('POST', '/v1/packages/check', body, a);
    expect([limited.status, (limited.body as { error: { code: string } }).error.code]).toEqual([
      429,
      'rate_limited',
    ]);
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    // Without a key: RATE_LIMIT_POINTS per IP, apart from the keyed traffic's budget.
    const anonymous: number[] = [];
    for (let i = 0; i < 4; i++) anonymous.push(await send({}));
    expect(anonymous).toEqual([200, 200, 200, 429]);
    expect(await send({ 'x-api-key': 'device-c' })).toBe(200);
  } finally {
    await server.close();
  }
});

test('with Redis unreachable the in-process insurance limiter keeps the limit: the N+1-th request is 429', async () => {
  const dead = new Redis({
    port: await freePort(),
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  const server = await serveApp(ctx, { ...own(), rateLimitPoints: 3, rateLimitWindowS: 60 }, { redis: dead });
  try {
    const seen: { status: number; degraded?: boolean }[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await server.request('POST', '/v1/packages/check', body);
      seen.push({ status: res.status, degraded: (res.body as { degraded?: boolean }).degraded });
    }
    // Served from PostgreSQL (degraded) while under the limit, refused past it.
    expect(seen).toEqual([
      { status: 200, degraded: true },
      { status: 200, degraded: true },
      { status: 200, degraded: true },
      { status: 429, degraded: undefined },
    ]);
  } finally {
    await server.close();
    dead.disconnect();
  }
});
