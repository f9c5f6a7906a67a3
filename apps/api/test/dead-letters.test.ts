import { packageKey, RedisBuffer } from '@safepkg/core';
import { pkgs, useTestContext } from '@safepkg/testkit';
import { serveApp, type TestServer } from './helpers';

const TOKEN = 'dead-letters-admin-token-0123456789';
const ctx = useTestContext({ adminToken: TOKEN, bufferPartitions: 1 });
const auth = { authorization: `Bearer ${TOKEN}` };

let server: TestServer;
beforeAll(async () => {
  server = await serveApp(ctx);
});
afterAll(() => server.close());

interface View {
  key: string;
  firstSeenAt: string;
  error: { code: string };
}

test('one corrupt dead-letter value neither breaks the listing nor the redrive: it is flagged corrupt_dead_letter and re-buffered', async () => {
  const [good, bad] = pkgs(0, 2, 'apidead').map(packageKey);
  const buffer = new RedisBuffer(ctx.redis, ctx.keys, 1, 1_000_000);
  await buffer.add([{ key: good as string, payload: { t: Date.UTC(2026, 0, 2) } }]);
  await buffer.deadLetter(0, await buffer.read(0, null, await buffer.snapshotSeq(0), 10), {
    code: '23514',
    message: 'check',
  });
  await ctx.redis.hset(ctx.keys.partition(0).dead, bad as string, '{"payload":');

  const listed = await server.request('GET', '/v1/admin/dead-letters', undefined, auth);
  expect(listed.status).toBe(200);
  const byKey = new Map((listed.body as { deadLetters: View[] }).deadLetters.map((d) => [d.key, d]));
  expect(byKey.get(good as string)).toMatchObject({
    firstSeenAt: '2026-01-02T00:00:00.000Z',
    error: { code: '23514' },
  });
  expect(byKey.get(bad as string)).toMatchObject({ error: { code: 'corrupt_dead_letter' } });

  const redriven = await server.request('POST', '/v1/admin/dead-letters/redrive', {}, auth);
  expect([redriven.status, redriven.body]).toEqual([200, { redriven: 2 }]);
  expect(await buffer.isPending([good as string, bad as string])).toEqual([true, true]);
  expect(await ctx.redis.hlen(ctx.keys.partition(0).dead)).toBe(0);
});
