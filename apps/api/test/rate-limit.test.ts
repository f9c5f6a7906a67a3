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

/** The RateLimit field's items (draft-ietf-httpapi-ratelimit-headers-10) as [name, r, t]. */
function rateLimitItems(field: string | null): [string, number, number][] {
  return (field ?? '').split(', ').map((item) => {
    const m = /^"([a-z-]+)";r=(\d+);t=(\d+)$/.exec(item);
    if (!m) throw new Error(`not a RateLimit item: ${item}`);
    return [m[1] as string, Number(m[2]), Number(m[3])];
  });
}

test('RateLimit-Policy names each budget a request spends; RateLimit counts each down, on answers and on the 429', async () => {
  const server = await serveApp(ctx, {
    ...own(),
    rateLimitPoints: 3,
    rateLimitIpPoints: 5,
    rateLimitWindowS: 60,
  });
  try {
    const keyed = { 'x-api-key': 'device-headers' };
    const seen: { status: number; policy: string | null; items: [string, number, number][] }[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await server.request('POST', '/v1/packages/check', body, keyed);
      seen.push({
        status: res.status,
        policy: res.headers.get('ratelimit-policy'),
        items: rateLimitItems(res.headers.get('ratelimit')),
      });
    }
    expect(seen.map((s) => s.status)).toEqual([200, 200, 200, 429]);
    for (const s of seen) expect(s.policy).toBe('"key";q=3;w=60, "keyed-ip";q=5;w=60');
    expect(seen.map((s) => s.items.map(([name, r]) => [name, r]))).toEqual([
      [
        ['key', 2],
        ['keyed-ip', 4],
      ],
      [
        ['key', 1],
        ['keyed-ip', 3],
      ],
      [
        ['key', 0],
        ['keyed-ip', 2],
      ],
      // Refused by its key's budget: the IP's was not spent, so only the key's is reported.
      [['key', 0]],
    ]);
    for (const s of seen) for (const [, , t] of s.items) expect(t).toBeGreaterThanOrEqual(1);
    for (const s of seen) for (const [, , t] of s.items) expect(t).toBeLessThanOrEqual(60);

    // Without a key: one budget per IP.
    const anonymous = await server.request('POST', '/v1/packages/check', body);
    expect(anonymous.headers.get('ratelimit-policy')).toBe('"ip";q=3;w=60');
    expect(rateLimitItems(anonymous.headers.get('ratelimit')).map(([n, r]) => [n, r])).toEqual([['ip', 2]]);

    // A second key behind the same IP: its own budget full, the IP's keyed budget down to 1, then 0 and refused.
    const other = { 'x-api-key': 'device-headers-2' };
    const a = await server.request('POST', '/v1/packages/check', body, other);
    const b = await server.request('POST', '/v1/packages/check', body, other);
    const c = await server.request('POST', '/v1/packages/check', body, other);
    expect([a.status, b.status, c.status]).toEqual([200, 200, 429]);
    expect(rateLimitItems(a.headers.get('ratelimit')).map(([n, r]) => [n, r])).toEqual([
      ['key', 2],
      ['keyed-ip', 1],
    ]);
    expect(rateLimitItems(c.headers.get('ratelimit')).map(([n, r]) => [n, r])).toEqual([
      ['key', 0],
      ['keyed-ip', 0],
    ]);
    expect(Number(c.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
  } finally {
    await server.close();
  }
});

test('routes outside /v1 (probes, the API document) carry no RateLimit fields; with limiting off neither does /v1', async () => {
  const server = await serveApp(ctx, { ...own(), rateLimitPoints: 3, rateLimitWindowS: 60 });
  try {
    const probe = await server.request('GET', '/healthz');
    expect([probe.headers.get('ratelimit'), probe.headers.get('ratelimit-policy')]).toEqual([null, null]);
  } finally {
    await server.close();
  }
  const off = await serveApp(ctx, { ...own(), rateLimitPoints: 0 });
  try {
    const res = await off.request('POST', '/v1/packages/check', body);
    expect([res.status, res.headers.get('ratelimit')]).toEqual([200, null]);
  } finally {
    await off.close();
  }
});
