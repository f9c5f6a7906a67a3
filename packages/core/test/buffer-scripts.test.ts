import {
  BufferFullError,
  KeySchema,
  READ_CHUNK,
  REDRIVE_CHUNK,
  RedisBuffer,
  packageKey,
  partitionOf,
  type BufferPayload,
  type PackageRef,
} from '@safepkg/core';
import { pkgs, useTestContext } from '@safepkg/testkit';

const ctx = useTestContext();

// Each test buffers under its own sub-prefix of the file's prefix, so tests never see each
// other's partitions (and the file's clean-up, which matches the prefix, still removes them).
let tests = 0;
function bufferFor(partitions: number, maxDepth = 1_000_000) {
  const keys = new KeySchema(`${ctx.config.keyPrefix}_${tests++}`);
  return {
    keys,
    buffer: new RedisBuffer(ctx.redis, keys, partitions, maxDepth),
    partitionKeys: (p: number) => keys.partition(p),
  };
}

function one(i: number, namespace = 'buf'): PackageRef {
  return pkgs(i, 1, namespace)[0] as PackageRef;
}

function entries(
  from: number,
  count: number,
  t: number,
  namespace = 'buf',
): { key: string; payload: BufferPayload }[] {
  return pkgs(from, count, namespace).map((ref) => ({ key: packageKey(ref), payload: { t } }));
}

/** Keys of `namespace` packages from `from` upwards that fall into partition `p` of `partitions`. */
function keysInPartition(p: number, partitions: number, count: number, namespace = 'buf'): string[] {
  const out: string[] = [];
  for (let i = 0; out.length < count; i++) {
    const key = packageKey(one(i, namespace));
    if (partitionOf(key, partitions) === p) out.push(key);
  }
  return out;
}

async function pendingScores(pending: string): Promise<Map<string, number>> {
  const flat = await ctx.redis.zrange(pending, '0', '-1', 'WITHSCORES');
  const out = new Map<string, number>();
  for (let i = 0; i < flat.length; i += 2) out.set(flat[i] as string, Number(flat[i + 1]));
  return out;
}

describe('add', () => {
  test('buffers data and pending together, then a re-add changes nothing and reports already pending', async () => {
    const { buffer, partitionKeys } = bufferFor(1);
    const k = partitionKeys(0);
    const batch = entries(0, 20, 1000);
    expect(await buffer.add(batch)).toEqual(new Array(20).fill(false));

    expect(await ctx.redis.zcard(k.pending)).toBe(20);
    expect(await ctx.redis.hlen(k.data)).toBe(20);
    expect(await ctx.redis.get(k.seq)).toBe('20');
    const scores = await pendingScores(k.pending);
    // Scores are the partition seq at buffering, one each, in call order.
    expect(batch.map((e) => scores.get(e.key))).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    const data = await ctx.redis.hgetall(k.data);
    expect(Object.values(data).every((v) => JSON.parse(v).t === 1000)).toBe(true);

    // Re-adding (with a later time, as a second device would) keeps the first time, the scores and seq.
    const again = [...entries(0, 20, 5000), ...entries(20, 2, 5000)];
    expect(await buffer.add(again)).toEqual([...new Array(20).fill(true), false, false]);
    expect(await ctx.redis.get(k.seq)).toBe('22');
    const after = await pendingScores(k.pending);
    for (const e of batch) expect(after.get(e.key)).toBe(scores.get(e.key));
    expect(JSON.parse((await ctx.redis.hget(k.data, batch[0]?.key ?? '')) ?? '{}')).toEqual({ t: 1000 });
    expect(await buffer.isPending([batch[0]?.key ?? '', packageKey(one(999))])).toEqual([true, false]);
  });

  test('duplicates within one call are written once and flagged after the first', async () => {
    const { buffer, partitionKeys } = bufferFor(2);
    const [a, b] = entries(100, 2, 7);
    if (!a || !b) throw new Error('no entries');
    expect(await buffer.add([a, b, a, { key: a.key, payload: { t: 9 } }, b])).toEqual([
      false,
      false,
      true,
      true,
      true,
    ]);
    const pa = partitionOf(a.key, 2);
    const pb = partitionOf(b.key, 2);
    const seqs =
      pa === pb
        ? [await ctx.redis.get(partitionKeys(pa).seq)]
        : [await ctx.redis.get(partitionKeys(pa).seq), await ctx.redis.get(partitionKeys(pb).seq)];
    expect(seqs).toEqual(pa === pb ? ['2'] : ['1', '1']);
    expect(await ctx.redis.hget(partitionKeys(pa).data, a.key)).toBe('{"t":7}');
  });

  test('a full partition writes nothing and fails the call; other partitions of the same call are fully written', async () => {
    // Capacity ceil(8 / 4) = 2 entries per partition.
    const { buffer, partitionKeys } = bufferFor(4, 8);
    const full = keysInPartition(1, 4, 4);
    const ok = keysInPartition(2, 4, 1);
    await buffer.add([{ key: full[0] as string, payload: { t: 1 } }]);

    const call = [...full.slice(1), ...ok].map((key) => ({ key, payload: { t: 2 } }));
    const err = await buffer.add(call).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BufferFullError);
    expect((err as BufferFullError).code).toBe('buffer_full');
    expect((err as BufferFullError).partitions).toEqual([1]);

    // Partition 1: exactly what was there before (nothing of the refused call).
    const k1 = partitionKeys(1);
    expect([...(await pendingScores(k1.pending)).keys()]).toEqual([full[0]]);
    expect(Object.keys(await ctx.redis.hgetall(k1.data))).toEqual([full[0]]);
    expect(await ctx.redis.get(k1.seq)).toBe('1');
    // Partition 2: its entry is complete (pending + data), so the retry finds it pending.
    const k2 = partitionKeys(2);
    expect(await ctx.redis.zscore(k2.pending, ok[0] as string)).toBe('1');
    expect(await ctx.redis.hget(k2.data, ok[0] as string)).toBe('{"t":2}');

    // Up to capacity fits; re-adding pending entries to a full partition is not refused (retries are idempotent).
    expect(await buffer.add([{ key: full[1] as string, payload: { t: 3 } }])).toEqual([false]);
    expect(await buffer.add(full.slice(0, 2).map((key) => ({ key, payload: { t: 4 } })))).toEqual([
      true,
      true,
    ]);
    await expect(buffer.add([{ key: full[2] as string, payload: { t: 5 } }])).rejects.toBeInstanceOf(
      BufferFullError,
    );
    expect(await ctx.redis.zcard(k1.pending)).toBe(2);
    expect(await ctx.redis.hlen(k1.data)).toBe(2);
  });

  test('one call larger than what Lua can unpack at once (8,000 values) is buffered whole', async () => {
    const { buffer, partitionKeys } = bufferFor(1);
    const batch = entries(200_000, 5000, 1);
    expect((await buffer.add(batch)).every((f) => f === false)).toBe(true);
    expect(await ctx.redis.zcard(partitionKeys(0).pending)).toBe(5000);
    expect(await ctx.redis.hlen(partitionKeys(0).data)).toBe(5000);
  });
});

describe('read', () => {
  test('reads a score window in order: after (exclusive) .. snapshot (inclusive), at most limit', async () => {
    const { buffer } = bufferFor(1);
    const batch = entries(300, 10, 42);
    await buffer.add(batch);
    const snapshot = await buffer.snapshotSeq(0);
    expect(snapshot).toBe(10);
    await buffer.add(entries(310, 3, 43)); // buffered after the snapshot: not in this flush

    const first = await buffer.read(0, null, snapshot, 4);
    expect(first.map((e) => e.score)).toEqual([1, 2, 3, 4]);
    expect(first.map((e) => e.key)).toEqual(batch.slice(0, 4).map((e) => e.key));
    expect(first.every((e) => e.payload.t === 42)).toBe(true);
    const second = await buffer.read(0, 4, snapshot, 4);
    expect(second.map((e) => e.score)).toEqual([5, 6, 7, 8]);
    const last = await buffer.read(0, 8, snapshot, 4);
    expect(last.map((e) => e.score)).toEqual([9, 10]);
    expect(await buffer.read(0, 10, snapshot, 4)).toEqual([]);
    expect(await buffer.snapshotSeq(5)).toBe(0);
  });

  test('a batch of 10,000 (the default FLUSH_BATCH_SIZE) from one partition is read whole, across READ_CHUNK-sized script calls', async () => {
    const { buffer } = bufferFor(1);
    for (let i = 0; i < 10; i++) await buffer.add(entries(400_000 + i * 1000, 1000, i));
    expect(READ_CHUNK).toBeLessThan(10_000);
    const batch = await buffer.read(0, null, await buffer.snapshotSeq(0), 10_000);
    expect(batch).toHaveLength(10_000);
    expect(batch[9999]?.score).toBe(10_000);
    // No gap and no repeat at the chunk seams.
    expect(batch.every((e, i) => e.score === i + 1)).toBe(true);
    expect(new Set(batch.map((e) => e.key)).size).toBe(10_000);
  });
});

describe('compare-and-delete (confirm)', () => {
  test('removes members whose score is unchanged and keeps one deleted and re-added after the read', async () => {
    const { buffer, partitionKeys } = bufferFor(1);
    const k = partitionKeys(0);
    const [x, y, z] = entries(500, 3, 100);
    if (!x || !y || !z) throw new Error('no entries');
    await buffer.add([x, y, z]);
    const read = await buffer.read(0, null, await buffer.snapshotSeq(0), 100);
    expect(read.map((e) => e.key)).toEqual([x.key, y.key, z.key]);

    // Between the read and this flusher's confirm: another flusher confirms x and z, then a
    // device checks x again, so x is buffered anew (new score, new first-seen time).
    const readX = read[0];
    const readZ = read[2];
    if (!readX || !readZ) throw new Error('no entries read');
    expect(await buffer.confirm(0, [readX, readZ])).toBe(2);
    expect(await buffer.add([{ key: x.key, payload: { t: 200 } }])).toEqual([false]);
    const newScore = Number(await ctx.redis.zscore(k.pending, x.key));
    expect(newScore).toBeGreaterThan(readX.score);

    // The slow flusher's confirm removes y only: x has a new score, z is already gone.
    expect(await buffer.confirm(0, read)).toBe(1);
    expect(await pendingScores(k.pending)).toEqual(new Map([[x.key, newScore]]));
    expect(await ctx.redis.hgetall(k.data)).toEqual({ [x.key]: '{"t":200}' });

    // A confirm carrying a score that is not the current one removes nothing.
    expect(await buffer.confirm(0, [{ key: x.key, score: newScore + 1, payload: { t: 200 } }])).toBe(0);
    expect(await buffer.confirm(0, [])).toBe(0);
    expect(await ctx.redis.zcard(k.pending)).toBe(1);
  });
});

describe('dead letters', () => {
  test('dead-letter moves an entry with its error; redrive re-buffers it with its original first-seen time', async () => {
    const { buffer, partitionKeys } = bufferFor(1);
    const k = partitionKeys(0);
    const [x, y] = entries(600, 2, 1234);
    if (!x || !y) throw new Error('no entries');
    await buffer.add([x, y]);
    const read = await buffer.read(0, null, await buffer.snapshotSeq(0), 10);
    const readX = read[0];
    if (!readX) throw new Error('nothing read');

    const error = { code: '23514', message: 'violates check constraint' };
    expect(await buffer.deadLetter(0, [readX], error)).toBe(1);
    expect(await buffer.isPending([x.key, y.key])).toEqual([false, true]);
    expect(await ctx.redis.hexists(k.data, x.key)).toBe(0);
    const letters = await buffer.deadLetters([0]);
    expect(letters).toEqual([
      { partition: 0, key: x.key, payload: { t: 1234 }, error, deadAt: expect.any(Number) },
    ]);

    // A stale score (entry re-buffered since the read) is not dead-lettered.
    const readY = read[1];
    if (!readY) throw new Error('nothing read');
    expect(await buffer.deadLetter(0, [{ ...readY, score: readY.score + 100 }], error)).toBe(0);
    expect(await buffer.isPending([y.key])).toEqual([true]);

    const seqBefore = await buffer.snapshotSeq(0);
    expect(await buffer.redrive(letters)).toBe(1);
    expect(await buffer.deadLetters([0])).toEqual([]);
    expect(Number(await ctx.redis.zscore(k.pending, x.key))).toBe(seqBefore + 1);
    expect(await ctx.redis.hget(k.data, x.key)).toBe('{"t":1234}');
    // Redriving again does nothing: it is no longer dead.
    expect(await buffer.redrive(letters)).toBe(0);
  });

  test('a redrive larger than one script call (REDRIVE_CHUNK) moves every letter back, in chunks', async () => {
    const { buffer, partitionKeys } = bufferFor(1);
    const k = partitionKeys(0);
    const many = entries(700, REDRIVE_CHUNK * 2 + 17, 4321);
    await buffer.add(many);
    const read = await buffer.read(0, null, await buffer.snapshotSeq(0), many.length);
    expect(await buffer.deadLetter(0, read, { code: '23514', message: 'refused' })).toBe(many.length);
    expect(await ctx.redis.zcard(k.pending)).toBe(0);

    const letters = await buffer.deadLetters([0], many.length);
    expect(await buffer.redrive(letters)).toBe(many.length);
    expect(await ctx.redis.hlen(k.dead)).toBe(0);
    expect(await ctx.redis.zcard(k.pending)).toBe(many.length);
    expect(await ctx.redis.hlen(k.data)).toBe(many.length);
  });

  test('redrive of an entry that is pending again only clears the dead letter and keeps the pending payload', async () => {
    const { buffer, partitionKeys } = bufferFor(1);
    const k = partitionKeys(0);
    const [x] = entries(700, 1, 10);
    if (!x) throw new Error('no entries');
    await buffer.add([x]);
    const read = await buffer.read(0, null, 1, 10);
    await buffer.deadLetter(0, read, { code: 'x', message: 'y' });
    await buffer.add([{ key: x.key, payload: { t: 20 } }]);
    const score = await ctx.redis.zscore(k.pending, x.key);

    expect(await buffer.redrive(await buffer.deadLetters([0]))).toBe(0);
    expect(await ctx.redis.hlen(k.dead)).toBe(0);
    expect(await ctx.redis.zscore(k.pending, x.key)).toBe(score);
    expect(await ctx.redis.hget(k.data, x.key)).toBe('{"t":20}');
  });
});

describe('stats and stray partitions', () => {
  test('stats report depth, oldest pending age and dead letters per partition', async () => {
    const { buffer } = bufferFor(1);
    await buffer.add(entries(800, 3, 10_000));
    await buffer.add(entries(803, 1, 30_000));
    const read = await buffer.read(0, null, 4, 1);
    await buffer.deadLetter(0, read, { code: 'x', message: 'y' });
    // The oldest remaining entry (score 2) was first seen at 10,000.
    expect(await buffer.stats([0, 1], 15_000)).toEqual([
      { partition: 0, depth: 3, oldestPendingAgeMs: 5000, deadLetters: 1 },
      { partition: 1, depth: 0, oldestPendingAgeMs: null, deadLetters: 0 },
    ]);
  });

  test('strayPartitions finds partitions beyond the configured count that still hold entries', async () => {
    const { buffer: wide, keys } = bufferFor(8);
    const narrow = new RedisBuffer(ctx.redis, keys, 3, 1_000_000);
    const batch = entries(900, 40, 1);
    await wide.add(batch);
    const used = [...new Set(batch.map((e) => partitionOf(e.key, 8)))].sort((a, b) => a - b);
    expect(used.filter((p) => p >= 3).length).toBeGreaterThan(0);

    expect(await narrow.strayPartitions()).toEqual(used.filter((p) => p >= 3));
    expect(await wide.strayPartitions()).toEqual([]);

    // A drained partition is no longer stray.
    const stray = used.filter((p) => p >= 3)[0] as number;
    const all = await wide.read(stray, null, await wide.snapshotSeq(stray), 100);
    await wide.confirm(stray, all);
    expect(await narrow.strayPartitions()).not.toContain(stray);
  });

  test('a partition beyond the configured count holding only dead letters is stray too, so they stay listable and redrivable', async () => {
    const { buffer: wide, keys } = bufferFor(8);
    const narrow = new RedisBuffer(ctx.redis, keys, 3, 1_000_000);
    const [key] = keysInPartition(6, 8, 1);
    await wide.add([{ key: key as string, payload: { t: 77 } }]);
    await wide.deadLetter(6, await wide.read(6, null, 1, 10), { code: '23514', message: 'check' });
    expect(await ctx.redis.exists(keys.partition(6).pending)).toBe(0);

    expect(await narrow.strayPartitions()).toEqual([6]);
    const letters = await narrow.deadLetters([0, 1, 2, ...(await narrow.strayPartitions())]);
    expect(letters.map((l) => [l.partition, l.key, l.payload.t])).toEqual([[6, key, 77]]);
    expect(await narrow.redrive(letters)).toBe(1);
    expect(await ctx.redis.hget(keys.partition(6).data, key as string)).toBe('{"t":77}');
  });
});

test('pendingSince: the buffered time of each pending key, across partitions; others and damaged payloads absent', async () => {
  const { buffer, partitionKeys } = bufferFor(4);
  const added = entries(0, 6, 1_000, 'since');
  await buffer.add(added);
  const damaged = added[5]?.key as string;
  await ctx.redis.hset(partitionKeys(buffer.partitionOf(damaged)).data, damaged, '{"t":"soon"}');
  const never = packageKey(one(99, 'since'));
  const since = await buffer.pendingSince([...added.map((e) => e.key), never]);
  expect([...since.keys()].sort()).toEqual(
    added
      .slice(0, 5)
      .map((e) => e.key)
      .sort(),
  );
  expect(new Set(since.values())).toEqual(new Set([1_000]));
  expect(new Set(added.slice(0, 5).map((e) => buffer.partitionOf(e.key))).size).toBeGreaterThan(1);
});
