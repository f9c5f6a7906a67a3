import {
  KeySchema,
  ReportBuffer,
  ReportCoalescer,
  packageKey,
  type ReportDelta,
  type ReportGroup,
} from '@safepkg/core';
import { pkgs, useTestContext } from '@safepkg/testkit';

const ctx = useTestContext();

let tests = 0;
/** A real ReportBuffer under its own sub-prefix, with every write recorded as its deltas. */
function recorded(options: { failCalls?: number[] } = {}) {
  const keys = new KeySchema(`${ctx.config.keyPrefix}_co${tests++}`);
  const buffer = new ReportBuffer(ctx.redis, keys, 1);
  const calls: ReportDelta[][] = [];
  // Each write recorded as the deltas it adds, whichever of the two calls made it.
  const writer = {
    add: async (keys: readonly string[], now: number) => {
      calls.push(keys.map((key) => ({ key, count: 1, lastSeenAt: now })));
      if (options.failCalls?.includes(calls.length)) throw new Error('redis said no');
      await buffer.add(keys, now);
    },
    addGroups: async (groups: readonly ReportGroup[]) => {
      calls.push(
        groups.flatMap((g) => g.keys.map((key) => ({ key, count: g.count, lastSeenAt: g.lastSeenAt }))),
      );
      if (options.failCalls?.includes(calls.length)) throw new Error('redis said no');
      await buffer.addGroups(groups);
    },
  };
  const hash = keys.partition(0).reports;
  const field = (f: string) => ctx.redis.hget(hash, f);
  return { calls, writer, hash, field };
}

describe('ReportCoalescer', () => {
  test('checks answered while a write is in flight share the next write, with summed counts and the latest time', async () => {
    const { calls, writer, field } = recorded();
    const co = new ReportCoalescer(writer);
    const [a, b, c] = pkgs(0, 3, 'coal').map(packageKey) as [string, string, string];
    const first = co.add([a, b], 1_000);
    // The first write is sent on the next turn; these arrive while it is in flight.
    await new Promise((r) => setImmediate(r));
    expect(calls).toHaveLength(1);
    const later = [co.add([a, c], 3_000), co.add([a, b], 2_000), co.add([c], 2_500)];
    await Promise.all([first, ...later]);
    expect(calls).toHaveLength(2);
    const second = new Map(calls[1]?.map((d) => [d.key, d]));
    expect(second.get(a)).toEqual({ key: a, count: 2, lastSeenAt: 3_000 });
    expect(second.get(b)).toEqual({ key: b, count: 1, lastSeenAt: 2_000 });
    expect(second.get(c)).toEqual({ key: c, count: 2, lastSeenAt: 3_000 });
    // In Redis: one report per check that carried the package.
    expect(await field(`n:${a}`)).toBe('3');
    expect(await field(`n:${b}`)).toBe('2');
    expect(await field(`n:${c}`)).toBe('2');
    expect(await field(`t:${a}`)).toBe('3000');
    expect(await field('total')).toBe('7');
    expect(await field('since')).toBe('1000');
  });

  test('checks of the same turn go in one write', async () => {
    const { calls, writer, field } = recorded();
    const co = new ReportCoalescer(writer);
    const keys = pkgs(0, 50, 'turn').map(packageKey);
    await Promise.all(Array.from({ length: 20 }, (_, i) => co.add(keys.slice(i, i + 10), 5_000 + i)));
    expect(calls).toHaveLength(1);
    expect(await field('total')).toBe('200');
    expect(await field(`n:${keys[10]}`)).toBe('10');
    expect(await field(`t:${keys[10]}`)).toBe(String(5_010));
  });

  test('a failed write fails every check of its batch and counts none of them; the next batch is written', async () => {
    const { calls, writer, field, hash } = recorded({ failCalls: [1] });
    const co = new ReportCoalescer(writer);
    const [a, b] = pkgs(0, 2, 'fail').map(packageKey) as [string, string];
    const failed = [co.add([a], 1_000), co.add([a, b], 1_001)];
    await expect(Promise.all(failed)).rejects.toThrow('redis said no');
    await expect(failed[1]).rejects.toThrow('redis said no');
    expect(await ctx.redis.exists(hash)).toBe(0);
    await co.add([b], 2_000);
    expect(calls).toHaveLength(2);
    expect(await field(`n:${b}`)).toBe('1');
    expect(await field(`n:${a}`)).toBeNull();
  });

  test('a write that throws before returning a promise fails its batch; later batches are still written', async () => {
    const { calls, writer, field } = recorded();
    let throwNext = true;
    const co = new ReportCoalescer({
      add: (keys, now) => {
        if (throwNext) {
          throwNext = false;
          throw new Error('thrown at once');
        }
        return writer.add(keys, now);
      },
      addGroups: (groups) => writer.addGroups(groups),
    });
    const [a] = pkgs(0, 1, 'sync').map(packageKey) as [string];
    await expect(co.add([a], 1_000)).rejects.toThrow('thrown at once');
    await co.add([a], 2_000);
    expect(calls).toHaveLength(1);
    expect(await field(`n:${a}`)).toBe('1');
  });

  test('a batch that reaches the size bound is sent at once, without waiting for the write in flight', async () => {
    const { calls, writer, field } = recorded();
    const co = new ReportCoalescer(writer, 100);
    const keys = pkgs(0, 250, 'cap').map(packageKey);
    const first = co.add(keys.slice(0, 10), 1);
    await new Promise((r) => setImmediate(r));
    expect(calls).toHaveLength(1);
    // 120 distinct packages while the first write is in flight: over the bound, sent now.
    const big = co.add(keys.slice(10, 130), 2);
    expect(calls).toHaveLength(2);
    const small = co.add(keys.slice(130, 140), 3);
    expect(calls).toHaveLength(2);
    await Promise.all([first, big, small]);
    expect(calls.map((c) => c.length)).toEqual([10, 120, 10]);
    expect(await field('total')).toBe('140');
  });

  test('no keys, no write', async () => {
    const { calls, writer } = recorded();
    await new ReportCoalescer(writer).add([], 1);
    expect(calls).toHaveLength(0);
  });
});
