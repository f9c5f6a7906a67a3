import { chaosFailed, runChaos, summaryLine } from '../src/chaos';

// The short chaos run of `npm test`; `npm run chaos -- --kills 100 --seconds 150` is the long one.
test('chaos: 20 SIGKILLs of api and flusher processes, a PostgreSQL crash and a Redis crash lose and duplicate nothing', async () => {
  const summary = await runChaos({ kills: 20, seconds: 30 });
  process.stdout.write(`${summaryLine(summary)}\n`);
  expect(summary.kills).toBe(20);
  expect(summary.sent).toBeGreaterThan(0);
  expect(summary).toMatchObject({ lost: 0, duplicated: 0, unqueued: 0, bufferLeft: 0, stored: summary.sent });
  expect(summary.load.abandoned).toBe(0);
  // Every request answered 200 counted once per package, no more (beyond attempts whose answer was lost).
  expect(summary.reports.sent).toBeGreaterThan(summary.sent);
  expect(summary.reports).toMatchObject({ lost: 0, over: 0 });
  expect(summary.reports.stored - summary.reports.sent).toBe(summary.reports.overWithinAmbiguous);
  expect(summary.reportKeysLeft).toBe(0);
  expect(chaosFailed(summary)).toBe(false);
}, 150_000);

test('control: the same accounting reports a loss when Redis runs without AOF and is killed under load', async () => {
  const summary = await runChaos({ kills: 0, seconds: 8, redisWithoutAof: true });
  process.stdout.write(`control (no AOF): ${summaryLine(summary)}\n`);
  expect(summary.lost).toBeGreaterThan(0);
  // The report accounting sees the loss too: the deltas buffered in the emptied Redis are gone.
  expect(summary.reports.lost).toBeGreaterThan(0);
  expect(chaosFailed(summary)).toBe(true);
}, 150_000);
