import { Lease } from '@safepkg/core';
import { useTestContext, waitFor } from '@safepkg/testkit';

const ctx = useTestContext();

test('acquire is exclusive: one holder at a time, the lock holding its random token', async () => {
  const attempts = await Promise.all(
    Array.from({ length: 10 }, () => Lease.acquire(ctx.redis, ctx.keys, 0, 60_000)),
  );
  const holders = attempts.filter((l): l is Lease => l !== null);
  expect(holders).toHaveLength(1);
  const holder = holders[0] as Lease;
  expect(holder.partition).toBe(0);
  expect(holder.key).toBe(ctx.keys.partition(0).lock);
  expect(await ctx.redis.get(holder.key)).toBe(holder.token);
  expect(holder.token).toMatch(/^[0-9a-f]{32}$/);

  // Other partitions are independent.
  const other = await Lease.acquire(ctx.redis, ctx.keys, 1, 60_000);
  expect(other).not.toBeNull();
  expect(other?.token).not.toBe(holder.token);

  // Released, it can be taken again.
  expect(await holder.release()).toBe(true);
  expect(await ctx.redis.exists(holder.key)).toBe(0);
  expect(await Lease.acquire(ctx.redis, ctx.keys, 0, 60_000)).not.toBeNull();
});

test('renew extends the TTL of the holder; release and renew by a stale holder do nothing', async () => {
  const stale = await Lease.acquire(ctx.redis, ctx.keys, 2, 150, 'stale-token');
  expect(stale).not.toBeNull();
  // Expiry (a holder that stalled past its TTL) lets another flusher take it.
  const current = await waitFor(() => Lease.acquire(ctx.redis, ctx.keys, 2, 60_000, 'current-token'), {
    what: 'the lease to expire and be taken',
    timeoutMs: 5000,
    intervalMs: 20,
  });

  expect(await stale?.renew()).toBe(false);
  expect(await stale?.release()).toBe(false);
  expect(await ctx.redis.get(current.key)).toBe('current-token');
  // The stale renew did not shorten the current holder's TTL to its own 150 ms.
  expect(await ctx.redis.pttl(current.key)).toBeGreaterThan(10_000);

  await ctx.redis.pexpire(current.key, 5000);
  expect(await current.renew()).toBe(true);
  expect(await ctx.redis.pttl(current.key)).toBeGreaterThan(10_000);

  expect(await current.release()).toBe(true);
  // Releasing twice, or renewing a released lease, does nothing (and does not re-create it).
  expect(await current.release()).toBe(false);
  expect(await current.renew()).toBe(false);
  expect(await ctx.redis.exists(current.key)).toBe(0);
});

test('renew and release by a wrong token leave another holder untouched', async () => {
  const holder = await Lease.acquire(ctx.redis, ctx.keys, 3, 60_000, 'right');
  if (!holder) throw new Error('not acquired');
  // A lease object of the same partition whose token is not the one in Redis: what a
  // flusher holds after its lease expired and another took it in between.
  await ctx.redis.set(holder.key, 'someone-else', 'PX', 60_000);
  expect(await holder.renew()).toBe(false);
  expect(await holder.release()).toBe(false);
  expect(await ctx.redis.get(holder.key)).toBe('someone-else');
});
