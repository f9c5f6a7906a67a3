import { createRequire } from 'node:module';
import {
  FLUSH_QUEUE_NAME,
  KeySchema,
  MAX_BUFFER_PARTITIONS,
  packageKey,
  type PartitionKeys,
} from '@safepkg/core';
import { pkgs } from '@safepkg/testkit';

// ioredis' own slot calculator (its cluster-key-slot dependency, which ships no types here),
// so that "one slot" means what ioredis routes by.
const keySlot = createRequire(require.resolve('ioredis'))('cluster-key-slot') as {
  (key: string): number;
  /** The common slot of all the keys, or -1 if they span slots. */
  generateMulti(keys: string[]): number;
};

const keys = new KeySchema('pfx');
const SIG = 'ab'.repeat(32);

test('the slot calculator agrees with Redis on known keys', () => {
  // From the Redis Cluster specification and `CLUSTER KEYSLOT`.
  expect(keySlot('123456789')).toBe(0x31c3 & 0x3fff);
  expect(keySlot('somekey')).toBe(11058);
  expect(keySlot('foo{hash_tag}')).toBe(keySlot('bar{hash_tag}'));
  expect(keySlot('foo{hash_tag}')).toBe(keySlot('hash_tag'));
});

describe('partition keys', () => {
  const fields: (keyof PartitionKeys)[] = ['seq', 'pending', 'data', 'lock', 'dead'];

  test('every key of a partition carries the hash tag {prefix:bP} and names its role', () => {
    expect(keys.partition(3)).toEqual({
      seq: '{pfx:b3}:seq',
      pending: '{pfx:b3}:pending',
      data: '{pfx:b3}:data',
      lock: '{pfx:b3}:lock',
      dead: '{pfx:b3}:dead',
      reports: '{pfx:b3}:reports',
      reportsInflight: '{pfx:b3}:reports:inflight',
      reportsFlushId: '{pfx:b3}:reports:id',
      reportsInflightId: '{pfx:b3}:reports:inflight-id',
    });
    for (const p of [0, 1, 15, 16, 1023]) {
      const k = keys.partition(p);
      expect(keys.partitionTag(p)).toBe(`{pfx:b${p}}`);
      for (const f of fields) expect(k[f].startsWith(`{pfx:b${p}}:`)).toBe(true);
      // Five distinct keys: no two roles share one.
      expect(new Set(fields.map((f) => k[f])).size).toBe(5);
    }
  });

  test('all keys of a partition map to one Redis Cluster slot: the slot of its tag', () => {
    for (const prefix of ['pfx', 'safepkg', 'Pfx_1-a']) {
      const schema = new KeySchema(prefix);
      for (let p = 0; p < 1024; p++) {
        const k = schema.partition(p);
        const slot = keySlot.generateMulti(fields.map((f) => k[f]));
        expect(slot).toBe(keySlot(`${prefix}:b${p}`));
      }
    }
  });

  test('partitions spread over slots (the default 16 partitions use 16 distinct slots)', () => {
    const schema = new KeySchema('safepkg');
    const slots = new Set(Array.from({ length: 16 }, (_, p) => keySlot(schema.partition(p).pending)));
    expect(slots.size).toBe(16);
  });

  test('keys of different prefixes and partitions never coincide', () => {
    const all = new Set<string>();
    for (const prefix of ['a', 'a1', 'ab']) {
      for (let p = 0; p < 20; p++) {
        for (const key of Object.values(new KeySchema(prefix).partition(p))) all.add(key);
      }
    }
    expect(all.size).toBe(3 * 20 * 9);
  });
});

describe('pending scan', () => {
  test('partition numbers are bounded, so leftover partitions can be probed instead of scanned', () => {
    expect(MAX_BUFFER_PARTITIONS).toBe(1024);
    expect(keys.partition(MAX_BUFFER_PARTITIONS - 1).pending).toBe(`{pfx:b1023}:pending`);
  });
});

describe('other keys', () => {
  test('cache keys hold the package key under the prefix', () => {
    const key = packageKey({ name: 'com.example.app', versionCode: 42, signature: SIG });
    expect(keys.cache(key)).toBe(`pfx:c:com.example.app:42:${SIG}`);
    // One key per package: distinct packages never share a cache key.
    const cacheKeys = pkgs(0, 100, 'cache').map((r) => keys.cache(packageKey(r)));
    expect(new Set(cacheKeys).size).toBe(100);
  });

  test('signer keys hold the signature under the prefix, apart from package cache keys', () => {
    expect(keys.signer(SIG)).toBe(`pfx:signer:${SIG}`);
    expect(keys.signer(SIG).startsWith('{')).toBe(false);
    expect(keys.signer(SIG)).not.toBe(keys.cache(SIG));
  });

  test('the BullMQ prefix is one hash tag, so every queue key shares one slot', () => {
    expect(keys.queuePrefix()).toBe('{pfx:q}');
    // BullMQ builds its keys as `<prefix>:<queue>:<suffix>`.
    const queueKeys = [
      'wait',
      'active',
      'meta',
      'events',
      'repeat',
      'id',
      'delayed',
      'completed',
      'job-1',
    ].map((suffix) => `${keys.queuePrefix()}:${FLUSH_QUEUE_NAME}:${suffix}`);
    expect(keySlot.generateMulti(queueKeys)).toBe(keySlot('pfx:q'));
  });

  test('the remaining keys are under the prefix and outside every partition tag', () => {
    expect(keys.rateLimitPrefix()).toBe('pfx:rl');
    expect(keys.flusherStatus()).toBe('pfx:flusher:status');
    for (const key of [keys.rateLimitPrefix(), keys.flusherStatus(), keys.cache('a.b:1:x')]) {
      expect(key.startsWith('pfx:')).toBe(true);
      expect(key.startsWith('{')).toBe(false);
    }
  });
});
