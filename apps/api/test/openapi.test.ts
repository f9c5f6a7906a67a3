import Ajv2020 from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import type { Express } from 'express';
import { Redis } from 'ioredis';
import { Pool } from 'pg';
import { createLogger, encodeFeedCursor } from '@safepkg/core';
import { freePort, pkgs, useTestContext } from '@safepkg/testkit';
import { createApp } from '../src/app';
import { ApiMetrics } from '../src/metrics';
import { openApiDocument } from '../src/openapi';
import { examplePackage, type JsonObject } from '../src/openapi-schemas';
import { serveApp, type TestServer } from './helpers';

const TOKEN = 'openapi-admin-token-0123456789';
const ctx = useTestContext({ adminToken: TOKEN, bufferPartitions: 2 });
const auth = { authorization: `Bearer ${TOKEN}` };

const doc = openApiDocument();
const ajv = new Ajv2020({ allErrors: true, strict: true });
addFormats(ajv);
// The document is added whole so that its $refs resolve; its top-level OpenAPI fields are not schema keywords.
ajv.addVocabulary(['openapi', 'jsonSchemaDialect', 'info', 'servers', 'tags', 'paths', 'components']);
ajv.addSchema(doc as object, 'openapi');

interface Operation {
  path: string;
  method: string;
  op: JsonObject;
}

const obj = (v: unknown): JsonObject => v as JsonObject;
const pointer = (...parts: string[]) =>
  parts.map((p) => p.replace(/~/g, '~0').replace(/\//g, '~1')).join('/');

const operations: Operation[] = Object.entries(obj(doc.paths)).flatMap(([path, item]) =>
  Object.entries(obj(item)).map(([method, op]) => ({ path, method, op: obj(op) })),
);
const isAdmin = (o: Operation) => o.path.startsWith('/v1/admin/');
const documented = (o: Operation, status: number) => obj(o.op.responses)[String(status)] !== undefined;

/** `${METHOD} ${path} ${status}` of every real response that was checked against the document. */
const observed = new Set<string>();

type Res = Awaited<ReturnType<TestServer['request']>>;

/** Validates a real response against the document's response for path + method + status. */
function expectDocumented(path: string, method: string, res: Res): void {
  const responses = obj(obj(obj(obj(doc.paths)[path])[method]).responses);
  let response = responses[String(res.status)] as JsonObject | undefined;
  if (response === undefined)
    throw new Error(`${method.toUpperCase()} ${path} answered ${res.status}, which is not documented`);
  let base = ['#', 'paths', path, method, 'responses', String(res.status)];
  const target = response.$ref;
  if (typeof target === 'string') {
    base = target.split('/');
    response = obj(obj(obj(doc.components).responses)[base[base.length - 1] as string]);
  }
  const headerComponents = obj(obj(doc.components).headers ?? {});
  for (const [header, spec] of Object.entries(obj(response.headers ?? {}))) {
    const target = obj(spec).$ref;
    const resolved =
      typeof target === 'string' ? obj(headerComponents[target.split('/').pop() as string]) : obj(spec);
    // Only the headers documented as always sent; the others (Content-Encoding, …) appear when they apply.
    if (obj(spec).required === true || resolved.required === true)
      expect([header, res.headers.get(header)]).toEqual([header, expect.any(String)]);
  }
  const content = obj(response.content);
  const type = (res.headers.get('content-type') ?? '').split(';')[0] as string;
  expect(Object.keys(content)).toContain(type);
  if (type === 'application/json') {
    const validate = ajv.getSchema(`openapi${pointer(...base)}/content/${pointer(type)}/schema`);
    if (!validate) throw new Error(`no schema for ${method} ${path} ${res.status}`);
    if (!validate(res.body)) {
      throw new Error(
        `${method.toUpperCase()} ${path} ${res.status}: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(res.body)}`,
      );
    }
  }
  observed.add(`${method.toUpperCase()} ${path} ${res.status}`);
}

/** A concrete URL for a documented path, from its parameters' examples. */
function urlOf(o: Operation): string {
  let url = o.path;
  for (const p of (o.op.parameters ?? []) as JsonObject[]) {
    if (p.in === 'path') url = url.replace(`{${String(p.name)}}`, encodeURIComponent(String(p.example)));
  }
  return url;
}

function exampleBody(o: Operation): unknown {
  const content = obj(obj(o.op.requestBody ?? {}).content ?? {});
  const media = content['application/json'] as JsonObject | undefined;
  return media ? obj(obj(media.examples).example).value : undefined;
}

async function send(
  server: TestServer,
  o: Operation,
  init: { body?: unknown; headers?: Record<string, string>; url?: string } = {},
) {
  const res = await server.request(o.method.toUpperCase(), init.url ?? urlOf(o), init.body, init.headers);
  expectDocumented(o.path, o.method, res);
  return res;
}

let server: TestServer;
beforeAll(async () => {
  server = await serveApp(ctx);
});
afterAll(() => server.close());

test('the document is a valid OpenAPI 3.1 shape whose every schema compiles under JSON Schema 2020-12', () => {
  expect(doc.openapi).toBe('3.1.0');
  for (const name of Object.keys(obj(obj(doc.components).schemas))) {
    expect(ajv.getSchema(`openapi#/components/schemas/${name}`)).toBeDefined();
  }
  // Every $ref points at something that exists.
  const refs = JSON.stringify(doc).match(/"\$ref":"[^"]+"/g) ?? [];
  for (const r of refs) {
    const [, kind, name] = /#\/components\/(\w+)\/(\w+)/.exec(r) ?? [];
    expect(obj(obj(doc.components)[kind as string])[name as string]).toBeDefined();
  }
});

test('GET /openapi.json serves the document', async () => {
  const res = await server.request('GET', '/openapi.json');
  expect(res.status).toBe(200);
  expect(res.body).toEqual(JSON.parse(JSON.stringify(doc)));
  expectDocumented('/openapi.json', 'get', res);
});

/** Routes as Express serves them: `METHOD /path/{param}`. */
function expressRoutes(app: Express): string[] {
  interface Layer {
    route?: { path: string; methods: Record<string, boolean> };
    name: string;
    handle: { stack?: Layer[] };
    slash?: boolean;
  }
  const out: string[] = [];
  const walk = (stack: Layer[]) => {
    for (const layer of stack) {
      if (layer.route) {
        const path = layer.route.path.replace(/:(\w+)/g, '{$1}');
        for (const [m, on] of Object.entries(layer.route.methods))
          if (on && m !== '_all') out.push(`${m.toUpperCase()} ${path}`);
      } else if (layer.name === 'router' && layer.handle.stack) {
        // Routers are mounted at the root; a mount path would have to be added here.
        expect(layer.slash).toBe(true);
        walk(layer.handle.stack);
      }
    }
  };
  walk((app as unknown as { router: { stack: Layer[] } }).router.stack);
  return out.sort();
}

test('every route Express serves is documented, and every documented operation is served', () => {
  const app = createApp({
    config: ctx.config,
    pool: ctx.db.pool,
    redis: ctx.redis,
    logger: createLogger({ logLevel: 'silent' }, 'test'),
    metrics: new ApiMetrics({ defaultMetrics: false }),
  });
  const served = expressRoutes(app);
  expect(served.length).toBeGreaterThan(10);
  expect(served).toEqual(operations.map((o) => `${o.method.toUpperCase()} ${o.path}`).sort());
});

test('success responses of every operation match their schemas', async () => {
  // In document order: the check buffers the example package, the lookup finds it pending, the evaluation stores it.
  for (const o of operations) {
    const res = await send(server, o, { body: exampleBody(o), headers: isAdmin(o) ? auth : {} });
    expect(res.status).toBeLessThan(300);
  }
  // The other 200 shapes: a pending package and a check that finds stored and new ones.
  const [fresh] = pkgs(0, 1, 'oapending');
  const check = operations.find((o) => o.path === '/v1/packages/check') as Operation;
  const get = operations.find((o) => o.path.startsWith('/v1/packages/{')) as Operation;
  await send(server, check, { body: { packages: [fresh] } });
  const pending = await send(server, get, {
    url: `/v1/packages/${fresh!.name}/${fresh!.versionCode}/${fresh!.signature}`,
  });
  expect(pending.body).toMatchObject({ pending: true, known: false });
  const stored = await send(server, get);
  expect(stored.body).toMatchObject({ known: true, status: 'malicious', source: 'manual', degraded: false });
  const mixed = await send(server, check, { body: { packages: [fresh, examplePackage] } });
  expect((mixed.body as { results: { known: boolean }[] }).results.map((r) => r.known)).toEqual([
    false,
    true,
  ]);
});

test('400, 413 and 415 answers of every operation that reads a body or parameters', async () => {
  for (const o of operations) {
    const headers = isAdmin(o) ? auth : {};
    if (documented(o, 415)) {
      const res = await send(server, o, {
        body: 'packages=1',
        headers: { ...headers, 'content-type': 'text/plain' },
      });
      expect(res.status).toBe(415);
    }
    if (documented(o, 413)) {
      const huge = JSON.stringify({ packages: 'x'.repeat(1024 * 1024 + 10) });
      expect((await send(server, o, { body: huge, headers })).status).toBe(413);
    }
    if (documented(o, 400) && o.method === 'post') {
      const res = await send(server, o, { body: '{"packages": [', headers });
      expect(res.status).toBe(400);
      const wrong = await send(server, o, { body: { unexpected: [1] }, headers });
      expect(wrong.status).toBe(o.path === '/v1/admin/flush' ? 202 : 400);
    }
  }
  for (const get of operations.filter((o) => o.method === 'get' && o.path.endsWith('{signature}'))) {
    const url = get.path.replace('{name}/{versionCode}/{signature}', '1bad/-1/xyz');
    const bad = await send(server, get, { url, headers: isAdmin(get) ? auth : {} });
    expect([url, bad.status]).toEqual([url, 400]);
    expect((bad.body as { error: { details: unknown[] } }).error.details).toHaveLength(3);
  }
});

test('the verdict feed: 400 for a bad cursor or limit, 410 for a cursor older than the oldest change kept', async () => {
  const feed = operations.find((o) => o.path === '/v1/admin/verdict-changes') as Operation;
  const bad = await send(server, feed, { url: `${feed.path}?after=nope&limit=0`, headers: auth });
  expect(bad.status).toBe(400);
  expect((bad.body as { error: { details: unknown[] } }).error.details).toHaveLength(2);
  // As retention leaves it after deleting the first five ids.
  await ctx.db.pool.query('UPDATE verdict_feed_state SET pruned_to = 5');
  try {
    const gone = await send(server, feed, {
      url: `${feed.path}?after=${encodeFeedCursor(1n)}`,
      headers: auth,
    });
    expect(gone.status).toBe(410);
    expect(gone.body).toMatchObject({ error: { code: 'cursor_expired' }, oldest: encodeFeedCursor(5n) });
  } finally {
    await ctx.db.pool.query('UPDATE verdict_feed_state SET pruned_to = 0');
  }
});

test('401 without the admin token, 404 when the admin API is disabled or the package/route is unknown', async () => {
  const disabled = await serveApp(ctx, { adminToken: null });
  try {
    for (const o of operations.filter(isAdmin)) {
      expect(
        (
          await send(server, o, {
            body: exampleBody(o),
            headers: { authorization: 'Bearer wrong-token-wrong-token' },
          })
        ).status,
      ).toBe(401);
      expect((await send(disabled, o, { body: exampleBody(o), headers: auth })).status).toBe(404);
    }
  } finally {
    await disabled.close();
  }
  const get = operations.find((o) => o.path.startsWith('/v1/packages/{')) as Operation;
  const [never] = pkgs(0, 1, 'oanever');
  const missing = await send(server, get, {
    url: `/v1/packages/${never!.name}/${never!.versionCode}/${never!.signature}`,
  });
  expect(missing.status).toBe(404);

  const noRoute = await server.request('GET', '/v1/nope');
  expect(noRoute.status).toBe(404);
  const validate = ajv.getSchema(
    `openapi#/components/responses/NotFound/content/${pointer('application/json')}/schema`,
  );
  expect(validate?.(noRoute.body)).toBe(true);
});

test('429 with Retry-After on every /v1 operation once a client is over its limit', async () => {
  const limited = await serveApp(ctx, { rateLimitPoints: 1, rateLimitWindowS: 60 });
  try {
    for (const o of operations.filter((x) => x.path.startsWith('/v1/'))) {
      const headers = { ...auth, 'x-api-key': `openapi-${o.method}-${o.path}` };
      await limited.request(o.method.toUpperCase(), urlOf(o), exampleBody(o), headers);
      expect((await send(limited, o, { body: exampleBody(o), headers })).status).toBe(429);
    }
  } finally {
    await limited.close();
  }
});

test('503 buffer_full with a tiny MAX_BUFFER_DEPTH', async () => {
  const full = await serveApp(ctx, { maxBufferDepth: 1 });
  try {
    const check = operations.find((o) => o.path === '/v1/packages/check') as Operation;
    const res = await send(full, check, { body: { packages: pkgs(0, 8, 'oafull') } });
    expect(res.status).toBe(503);
    expect((res.body as { error: { code: string } }).error.code).toBe('buffer_full');
  } finally {
    await full.close();
  }
});

test('503 unavailable (and readiness not_ready) with Redis and PostgreSQL both unreachable; degraded readiness with one', async () => {
  const closed = await freePort();
  const deadPool = new Pool({ connectionString: `postgres://postgres@127.0.0.1:${closed}/none` });
  deadPool.on('error', () => undefined);
  const deadRedis = new Redis({
    port: closed,
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  // Scheduling a flush goes through Redis (BullMQ in main.ts); here a PING on the dead client stands in for it.
  const requestFlush = () => deadRedis.ping().then(() => undefined);
  const down = await serveApp(ctx, {}, { pool: deadPool, redis: deadRedis, requestFlush });
  const pgDown = await serveApp(ctx, {}, { pool: deadPool });
  const redisDown = await serveApp(ctx, {}, { redis: deadRedis });
  try {
    for (const o of operations.filter((x) => documented(x, 503) && x.path !== '/readyz')) {
      const res = await send(down, o, { body: exampleBody(o), headers: isAdmin(o) ? auth : {} });
      expect([o.path, res.status, (res.body as { error: { code: string } }).error.code]).toEqual([
        o.path,
        503,
        'unavailable',
      ]);
    }
    const readyz = operations.find((o) => o.path === '/readyz') as Operation;
    expect((await send(down, readyz)).body).toEqual({
      status: 'not_ready',
      checks: { postgres: false, redis: false },
    });
    const onlyRedis = await send(pgDown, readyz);
    expect([onlyRedis.status, onlyRedis.body]).toEqual([
      200,
      { status: 'degraded', checks: { postgres: false, redis: true } },
    ]);
    const onlyPg = await send(redisDown, readyz);
    expect([onlyPg.status, onlyPg.body]).toEqual([
      200,
      { status: 'degraded', checks: { postgres: true, redis: false } },
    ]);
  } finally {
    await Promise.all([down.close(), pgDown.close(), redisDown.close()]);
    deadRedis.disconnect();
    await deadPool.end().catch(() => undefined);
  }
});

test('500 is the bare internal envelope', async () => {
  const broken = await serveApp(
    ctx,
    {},
    { requestFlush: () => Promise.reject(new Error('queue exploded at /secret/path')) },
  );
  try {
    const flush = operations.find((o) => o.path === '/v1/admin/flush') as Operation;
    const res = await send(broken, flush, { headers: auth });
    expect(res.status).toBe(500);
    expect(JSON.stringify(res.body)).not.toContain('secret');
  } finally {
    await broken.close();
  }
});

test('every documented response was produced by a real request above (500: at least once)', () => {
  const missing: string[] = [];
  for (const o of operations) {
    for (const status of Object.keys(obj(o.op.responses))) {
      if (status === '500') continue;
      const key = `${o.method.toUpperCase()} ${o.path} ${status}`;
      if (!observed.has(key)) missing.push(key);
    }
  }
  expect(missing).toEqual([]);
  expect([...observed].some((k) => k.endsWith(' 500'))).toBe(true);
});
