import { KeySchema, RedisBuffer, packageKey, type PackageRef } from '@safepkg/core';
import { pkgs, useTestContext } from '@safepkg/testkit';

const ctx = useTestContext();

test('a corrupt dead-letter value is listed as corrupt_dead_letter, the others stay readable, and redrive re-buffers it stamped at listing time', async () => {
  const keys = new KeySchema(`${ctx.config.keyPrefix}_dl`);
  const buffer = new RedisBuffer(ctx.redis, keys, 1, 1_000_000);
  const [good, ...bad] = pkgs(0, 5, 'corruptdl').map((r: PackageRef) => packageKey(r));
  if (!good || bad.length !== 4) throw new Error('no keys');
  await buffer.add([{ key: good, payload: { t: 1234 } }]);
  const read = await buffer.read(0, null, await buffer.snapshotSeq(0), 10);
  const error = { code: '23514', message: 'violates check constraint' };
  expect(await buffer.deadLetter(0, read, error)).toBe(1);
  // Written by something other than deadLetter(): not JSON, JSON null, a wrong shape, a time no Date holds.
  const dead = keys.partition(0).dead;
  const corrupt = [
    '{not json',
    'null',
    '{"payload":{"t":"yesterday"},"error":{},"deadAt":1}',
    '{"payload":{"t":1e300},"error":{"code":"x","message":"y"},"deadAt":1}',
  ];
  await ctx.redis.hset(dead, ...bad.flatMap((k, i) => [k, corrupt[i] as string]));

  const now = 1_700_000_000_000;
  const letters = await buffer.deadLetters([0], 1000, now);
  const byKey = new Map(letters.map((l) => [l.key, l]));
  expect(letters).toHaveLength(5);
  expect(byKey.get(good)).toEqual({
    partition: 0,
    key: good,
    payload: { t: 1234 },
    error,
    deadAt: expect.any(Number),
  });
  for (const k of bad) {
    expect(byKey.get(k)).toEqual({
      partition: 0,
      key: k,
      payload: { t: now },
      error: { code: 'corrupt_dead_letter', message: expect.any(String) },
      deadAt: now,
    });
  }

  expect(await buffer.redrive(letters)).toBe(5);
  expect(await ctx.redis.hlen(dead)).toBe(0);
  expect(await buffer.isPending([good, ...bad])).toEqual([true, true, true, true, true]);
  const data = keys.partition(0).data;
  expect(await ctx.redis.hget(data, good)).toBe('{"t":1234}');
  expect(await ctx.redis.hget(data, bad[0] as string)).toBe(`{"t":${now}}`);
});
