import { currentWalLsn, lsnKeyValue, parseLsn, VerdictLsn } from '@safepkg/core';
import { useTestContext } from '@safepkg/testkit';

const ctx = useTestContext();

test('parseLsn reads X/Y as one number, high half first; lsnKeyValue is 16 hex digits', () => {
  expect(parseLsn('0/0')).toBe(0n);
  expect(parseLsn('0/3000060')).toBe(0x3000060n);
  expect(parseLsn('1/0')).toBe(1n << 32n);
  expect(parseLsn('FFFFFFFF/FFFFFFFF')).toBe((1n << 64n) - 1n);
  expect(lsnKeyValue(parseLsn('16/B374D848'))).toBe('00000016B374D848');
  for (const bad of ['', '0', '0/', 'G/1', '0/1/2', '123456789/0'])
    expect(() => parseLsn(bad)).toThrow(/not an LSN/);
});

test('raise only moves the stored LSN forward, comparing the high half first', async () => {
  const lsn = new VerdictLsn(ctx.redis, ctx.keys);
  expect(await lsn.read()).toBeNull();
  await lsn.raise(parseLsn('0/FFFFFFF0'));
  expect(await lsn.read()).toBe(parseLsn('0/FFFFFFF0'));
  // A lower value (a slower pod's older commit) leaves it; a value past the 32-bit boundary raises it.
  await lsn.raise(parseLsn('0/10'));
  expect(await lsn.read()).toBe(parseLsn('0/FFFFFFF0'));
  await lsn.raise(parseLsn('1/0'));
  expect(await lsn.read()).toBe(parseLsn('1/0'));
  await lsn.raise(parseLsn('0/FFFFFFFF'));
  expect(await lsn.read()).toBe(parseLsn('1/0'));
  // Concurrent raises end at the largest.
  const values = Array.from({ length: 50 }, (_, i) => parseLsn(`1/${(i * 7919).toString(16)}`));
  await Promise.all(values.map((v) => lsn.raise(v)));
  expect(await lsn.read()).toBe(values.reduce((a, b) => (a > b ? a : b)));
  expect(await ctx.redis.ttl(ctx.keys.verdictLsn())).toBe(-1);
});

test('a damaged stored value reads as unknown and is replaced by the next raise', async () => {
  const lsn = new VerdictLsn(ctx.redis, ctx.keys);
  await ctx.redis.set(ctx.keys.verdictLsn(), 'garbage');
  expect(await lsn.read()).toBeNull();
  await lsn.raise(5n);
  expect(await lsn.read()).toBe(5n);
});

test("currentWalLsn is the primary's write position, past a commit that returned", async () => {
  const before = await currentWalLsn(ctx.db.pool);
  await ctx.db.pool.query(
    "INSERT INTO packages (name, version_code, signature, first_seen_at) VALUES ('com.lsn.app', 1, repeat('a', 64), now())",
  );
  expect(await currentWalLsn(ctx.db.pool)).toBeGreaterThan(before);
});
