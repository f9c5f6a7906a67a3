import { Backoff } from '../src/backoff';

/** A random source that replays the given values, then repeats the last one. */
function replay(...values: number[]): () => number {
  let i = 0;
  return () => values[Math.min(i++, values.length - 1)] as number;
}

test('the ceiling doubles from 2 × base per consecutive failure and stops at the cap', () => {
  const b = new Backoff(
    100,
    1000,
    () => 1,
    () => 0,
  );
  const delays = Array.from({ length: 6 }, () => b.fail(0));
  expect(delays).toEqual([200, 400, 800, 1000, 1000, 1000]);
  expect(b.consecutiveFailures).toBe(6);
});

test('full jitter: the delay is the random fraction of the ceiling, anywhere from 0 to it', () => {
  const b = new Backoff(100, 10_000, replay(0, 0.5, 0.25, 0.999));
  expect([b.fail(0), b.fail(0), b.fail(0), b.fail(0)]).toEqual([0, 200, 200, 1598]);
});

test('ready() is false until the chosen delay has passed, then true', () => {
  let now = 1_000_000;
  const b = new Backoff(
    100,
    10_000,
    () => 0.5,
    () => now,
  );
  expect(b.ready()).toBe(true);
  expect(b.fail()).toBe(100);
  expect(b.ready()).toBe(false);
  now += 99;
  expect(b.ready()).toBe(false);
  now += 1;
  expect(b.ready()).toBe(true);
});

test('a success resets the exponent and clears the wait', () => {
  const b = new Backoff(
    100,
    10_000,
    () => 1,
    () => 0,
  );
  b.fail(0);
  b.fail(0);
  b.fail(0);
  expect(b.ready(0)).toBe(false);
  b.succeed();
  expect(b.ready(0)).toBe(true);
  expect(b.consecutiveFailures).toBe(0);
  expect(b.fail(0)).toBe(200);
});

test('a very long outage stays at the cap instead of overflowing', () => {
  const b = new Backoff(
    1000,
    30_000,
    () => 1,
    () => 0,
  );
  for (let i = 0; i < 5000; i++) b.fail(0);
  expect(b.fail(0)).toBe(30_000);
  expect(Number.isFinite(b.ceilingMs)).toBe(true);
});
