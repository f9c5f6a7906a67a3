import { packageKey, PackageStore, ReportBuffer } from '@safepkg/core';
import {
  contextEnv,
  parseMetrics,
  pkg,
  pkgs,
  startApp,
  useTestContext,
  waitFor,
  type RunningApp,
} from '@safepkg/testkit';

const ctx = useTestContext({ bufferPartitions: 4, flushIntervalMs: 200 });
let flusher: RunningApp | undefined;

afterAll(async () => {
  await flusher?.kill('SIGTERM');
});

const DAY = 86_400_000;

test('the flusher process sweeps old packages in batches, keeps recent and reported ones, and counts what it swept', async () => {
  const store = new PackageStore(ctx.db.pool);
  const old = pkgs(0, 300, 'retentione2e');
  const recent = pkgs(0, 20, 'retentionrecent');
  const reported = pkg(0, 'retentionreported');
  await store.insertBatch(
    [...old, reported].map((ref) => ({ ref, firstSeenAt: new Date(Date.now() - 10 * DAY) })),
  );
  await store.insertBatch(recent.map((ref) => ({ ref, firstSeenAt: new Date() })));
  await ctx.db.pool.query('UPDATE packages SET last_seen_at = first_seen_at');
  // A device reported this old package just now: its delta is in Redis until the flusher applies it.
  await new ReportBuffer(ctx.redis, ctx.keys, ctx.config.bufferPartitions).add(
    [packageKey(reported)],
    Date.now(),
  );

  flusher = await startApp(
    'flusher',
    contextEnv(ctx.config, {
      LOG_LEVEL: 'warn',
      RETENTION_DAYS: '7',
      RETENTION_SWEEP_INTERVAL_MS: '1000',
      RETENTION_BATCH_SIZE: '50',
    }),
  );
  const count = async () => Number((await ctx.db.pool.query('SELECT count(*) AS n FROM packages')).rows[0].n);
  await waitFor(async () => (await count()) === 21, { what: 'the sweep', timeoutMs: 20_000 });
  const { rows } = await ctx.db.pool.query<{ name: string; reports: string }>(
    'SELECT name, reports FROM packages WHERE name = $1',
    [reported.name],
  );
  expect(rows).toEqual([{ name: reported.name, reports: '1' }]);
  expect(Number((await ctx.db.pool.query('SELECT count(*) AS n FROM analysis_queue')).rows[0].n)).toBe(21);

  // The pass ends after its last deletions: one more (short) batch after a pause of
  // RETENTION_BATCH_PAUSE_MS; the last-sweep gauge is set when it has.
  const scrape = async () =>
    parseMetrics(await (await fetch(`${(flusher as RunningApp).url}/metrics`)).text());
  const sum = (m: Awaited<ReturnType<typeof scrape>>, name: string) =>
    m.filter((s) => s.name === name).reduce((a, s) => a + s.value, 0);
  const metrics = await waitFor(
    async () => {
      const m = await scrape();
      return sum(m, 'safepkg_retention_last_sweep_timestamp_seconds') > 0 && m;
    },
    { what: 'the end of the sweep' },
  );
  const value = (name: string) => sum(metrics, name);
  expect(value('safepkg_retention_swept_total')).toBe(300);
  expect(value('safepkg_retention_last_sweep_timestamp_seconds')).toBeGreaterThan(0);
  expect(value('safepkg_retention_sweep_duration_seconds_count')).toBeGreaterThan(0);
  // Stops cleanly (the sweep's timer is stopped, its batch finished).
  const exit = await flusher.kill('SIGTERM');
  flusher = undefined;
  expect(exit).toMatchObject({ code: 0 });
});
