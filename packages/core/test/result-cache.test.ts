import {
  KeySchema,
  ReportBuffer,
  ResultCache,
  packageKey,
  partitionOf,
  decodeCached,
  decodeSigner,
  encodeCached,
  encodeSigner,
  signerStatusOf,
  type CachedStatus,
} from '@safepkg/core';
import { pkgs, reportKeysLeft, useTestContext } from '@safepkg/testkit';

const ctx = useTestContext();

const status = (rev: number, over: Partial<CachedStatus> = {}): CachedStatus => ({
  rev,
  verdict: null,
  source: null,
  threatIndex: null,
  firstSeenAt: 1_700_000_000_000,
  ...over,
});

test('encoded values start with the rev (what cache-fill matches) and decode back', () => {
  const s = status(12, { verdict: 'malicious', source: 'manual', threatIndex: 0.75 });
  expect(encodeCached(s).startsWith('{"rev":12,')).toBe(true);
  expect(decodeCached(encodeCached(s))).toEqual(s);
  expect(decodeCached('not json')).toBeNull();
  expect(decodeCached('{"rev":"1","f":1}')).toBeNull();
});

test('cache-fill writes a key only if it is absent or holds a lower rev, with the TTL', async () => {
  const cache = new ResultCache(ctx.redis, ctx.keys, 600);
  expect(
    await cache.fill([
      { key: 'a.b:1:x', status: status(3, { verdict: 'safe', source: 'model', threatIndex: 0.1 }) },
    ]),
  ).toBe(1);
  const ttl = await ctx.redis.ttl(ctx.keys.cache('a.b:1:x'));
  // Bounds loose enough for a stalled machine; the point is that a TTL (not none: -1) is set.
  expect(ttl).toBeGreaterThan(60);
  expect(ttl).toBeLessThanOrEqual(600);

  // A slow reader holding an older row (rev 2), or the same rev, cannot overwrite it.
  expect(await cache.fill([{ key: 'a.b:1:x', status: status(2) }])).toBe(0);
  expect(
    await cache.fill([
      { key: 'a.b:1:x', status: status(3, { verdict: 'malicious', source: 'model', threatIndex: 1 }) },
    ]),
  ).toBe(0);
  expect((await cache.getMany(['a.b:1:x'])).get('a.b:1:x')).toMatchObject({ rev: 3, verdict: 'safe' });

  // A newer rev (an evaluation's write-through) replaces it; rev 10 is newer than rev 9 (not compared as text).
  expect(
    await cache.fill([
      { key: 'a.b:1:x', status: status(9, { verdict: 'suspicious', source: 'manual', threatIndex: 0.5 }) },
    ]),
  ).toBe(1);
  expect(
    await cache.fill([
      { key: 'a.b:1:x', status: status(10, { verdict: 'malicious', source: 'manual', threatIndex: 0.9 }) },
    ]),
  ).toBe(1);
  expect((await cache.getMany(['a.b:1:x'])).get('a.b:1:x')).toMatchObject({ rev: 10, verdict: 'malicious' });
});

test('one fill call of many keys decides each key on its own; getMany answers the cached ones only', async () => {
  const cache = new ResultCache(ctx.redis, ctx.keys, 600);
  await cache.fill([{ key: 'c.d:1:y', status: status(5) }]);
  const written = await cache.fill([
    { key: 'c.d:1:y', status: status(4) },
    { key: 'c.d:2:y', status: status(0) },
    { key: 'c.d:3:y', status: status(1) },
  ]);
  expect(written).toBe(2);
  await ctx.redis.set(ctx.keys.cache('c.d:4:y'), 'garbage');
  const got = await cache.getMany(['c.d:1:y', 'c.d:2:y', 'c.d:3:y', 'c.d:4:y', 'c.d:5:y']);
  expect([...got.entries()].map(([k, s]) => [k, s.rev])).toEqual([
    ['c.d:1:y', 5],
    ['c.d:2:y', 0],
    ['c.d:3:y', 1],
  ]);
  expect(await cache.fill([])).toBe(0);
  expect((await cache.getMany([])).size).toBe(0);
});

describe('signer entries', () => {
  const SIG = 'c'.repeat(64);

  test('encoded with the rev first; a negative entry is rev 0 with nulls; half entries decode as misses', () => {
    const s = { rev: 4, verdict: 'malicious' as const, source: 'manual' as const, threatIndex: 0.9 };
    expect(encodeSigner(s).startsWith('{"rev":4,')).toBe(true);
    expect(decodeSigner(encodeSigner(s))).toEqual(s);
    expect(signerStatusOf(undefined)).toEqual({ rev: 0, verdict: null, source: null, threatIndex: null });
    expect(decodeSigner(encodeSigner(signerStatusOf(undefined)))).toEqual(signerStatusOf(undefined));
    expect(decodeSigner('{"rev":1,"v":"malicious","s":null,"x":null}')).toBeNull();
    expect(decodeSigner('nope')).toBeNull();
  });

  test('read in one MGET with the packages; filled by the same rev guard (a negative entry never replaces a verdict)', async () => {
    const cache = new ResultCache(ctx.redis, ctx.keys, 600);
    expect(
      await cache.fill(
        [{ key: 'a.b:1:y', status: status(1) }],
        [{ signature: SIG, status: signerStatusOf(undefined) }],
      ),
    ).toBe(2);
    const verdict = { rev: 1, verdict: 'suspicious' as const, source: 'model' as const, threatIndex: 0.5 };
    expect(await cache.fill([], [{ signature: SIG, status: verdict }])).toBe(1);
    expect(await cache.fill([], [{ signature: SIG, status: signerStatusOf(undefined) }])).toBe(0);
    expect(await cache.fill([], [{ signature: SIG, status: verdict }])).toBe(0);
    const read = await cache.read(['a.b:1:y', 'a.b:1:none'], [SIG, 'd'.repeat(64)]);
    expect([...read.packages.keys()]).toEqual(['a.b:1:y']);
    expect([...read.signers]).toEqual([[SIG, verdict]]);
    expect(await ctx.redis.ttl(ctx.keys.signer(SIG))).toBeGreaterThan(60);
  });
});

describe('readCounting (the read form of reports-add.lua)', () => {
  const PARTITIONS = 4;
  const setUp = () => {
    const keys = new KeySchema(`${ctx.config.keyPrefix}_rc${Math.random().toString(36).slice(2, 8)}`);
    return {
      keys,
      cache: new ResultCache(ctx.redis, keys, 600),
      reports: new ReportBuffer(ctx.redis, keys, PARTITIONS),
    };
  };
  const sig = 'cd'.repeat(32);

  test('every package cached: answers as read does and counts each package once, in its own partition, at the time given', async () => {
    const { keys, cache, reports } = setUp();
    const all = pkgs(0, 12, 'rcount').map(packageKey);
    await cache.fill(
      all.map((key, i) => ({ key, status: status(i + 1) })),
      [{ signature: sig, status: { rev: 2, verdict: 'malicious', source: 'manual', threatIndex: 1 } }],
    );
    const plain = await cache.read(all, [sig, 'ef'.repeat(32)]);
    const read = await cache.readCounting(all, [sig, 'ef'.repeat(32)], reports.countTarget(all), 7_000);
    expect(read.counted).toBe(true);
    expect(read.packages).toEqual(plain.packages);
    expect(read.signers).toEqual(plain.signers);
    expect(read.packages.size).toBe(12);
    for (const key of all) {
      const h = keys.partition(partitionOf(key, PARTITIONS)).reports;
      expect(await ctx.redis.hmget(h, `n:${key}`, `t:${key}`)).toEqual(['1', '7000']);
    }
    const stats = await reports.stats([0, 1, 2, 3], 8_000);
    expect(stats.reduce((a, s) => a + s.buffered, 0)).toBe(12);
    expect(stats.filter((s) => s.buffered > 0).length).toBeGreaterThan(1);
    for (const s of stats) if (s.buffered > 0) expect(s.oldestAgeMs).toBe(1_000);
    // A second check adds to the same fields; the oldest delta's time stays.
    await cache.readCounting(all.slice(0, 3), [], reports.countTarget(all.slice(0, 3)), 9_000);
    expect(await reports.pendingFor(all[0] as string)).toEqual({ count: 2, lastSeenAt: 9_000 });
    expect((await reports.stats([0, 1, 2, 3], 10_000)).reduce((a, s) => a + s.buffered, 0)).toBe(15);
  });

  test('one package not cached (absent, or not a cached status): answers the rest and writes nothing', async () => {
    const { keys, cache, reports } = setUp();
    const all = pkgs(0, 5, 'rcmiss').map(packageKey);
    await cache.fill(all.slice(0, 4).map((key) => ({ key, status: status(1) })));
    const missing = await cache.readCounting(all, [], reports.countTarget(all), 1_000);
    expect(missing.counted).toBe(false);
    expect([...missing.packages.keys()].sort()).toEqual(all.slice(0, 4).sort());
    await ctx.redis.set(keys.cache(all[4] as string), 'garbage');
    const garbage = await cache.readCounting(all, [], reports.countTarget(all), 1_000);
    expect(garbage.counted).toBe(false);
    expect(garbage.packages.size).toBe(4);
    expect(await reportKeysLeft(ctx.redis, keys, PARTITIONS)).toBe(0);
  });
});

test('decodes are kept per entry text: a changed entry is read afresh, never answered from an older decode', async () => {
  const cache = new ResultCache(ctx.redis, ctx.keys, 600);
  const key = 'memo.a:1:x';
  await cache.fill([{ key, status: status(1, { verdict: 'safe', source: 'model', threatIndex: 0.1 }) }]);
  expect((await cache.getMany([key])).get(key)?.verdict).toBe('safe');
  expect((await cache.getMany([key])).get(key)?.verdict).toBe('safe');
  await cache.fill([
    { key, status: status(2, { verdict: 'malicious', source: 'manual', threatIndex: 0.9 }) },
  ]);
  expect((await cache.getMany([key])).get(key)).toEqual(
    status(2, { verdict: 'malicious', source: 'manual', threatIndex: 0.9 }),
  );
  // Text that does not decode stays a miss however often it is read.
  await ctx.redis.set(ctx.keys.cache(key), '{"rev":3,"broken"');
  expect((await cache.getMany([key])).has(key)).toBe(false);
  expect((await cache.getMany([key])).has(key)).toBe(false);
});
