import { spawn } from 'node:child_process';
import { processCpuMs, serverTreeCpuMs } from '../src/cpu-time';

/** A child that spins until it has used `ms` of CPU itself (so a busy machine only makes it slower). */
const spinner = (ms: number) =>
  spawn(process.execPath, [
    '-e',
    `for (;;) { const u = process.cpuUsage(); if ((u.user + u.system) / 1000 >= ${ms}) break; }`,
  ]);

/** Runs a spinner of `ms` CPU and waits until it has exited (and is reaped). */
function burn(ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spinner(ms);
    child.once('error', reject);
    child.once('exit', () => resolve());
  });
}

test("a server tree's CPU includes what its exited children used (reaped: cutime/cstime)", async () => {
  const before = serverTreeCpuMs(process.pid);
  const own = processCpuMs(process.pid);
  await burn(600);
  const gained = serverTreeCpuMs(process.pid) - before;
  const ownGained = processCpuMs(process.pid) - own;
  // The child's 600 ms of CPU (its start-up included) is counted, beyond what this process used
  // itself: 10 ms ticks are the unit, and each reading rounds.
  expect(gained - ownGained).toBeGreaterThanOrEqual(550);
});

test("a live child's CPU is counted while it runs", async () => {
  const children = () => serverTreeCpuMs(process.pid) - processCpuMs(process.pid);
  const before = children();
  const child = spinner(60_000);
  try {
    // However slow the machine, the running child's CPU shows up before it exits.
    let gained = 0;
    for (let i = 0; i < 100 && gained < 250; i++) {
      await new Promise((r) => setTimeout(r, 100));
      gained = children() - before;
    }
    expect(child.exitCode).toBeNull();
    expect(gained).toBeGreaterThanOrEqual(250);
  } finally {
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
  }
});

test('a process that does not exist is an error, not zero', () => {
  expect(() => serverTreeCpuMs(2 ** 22 + 7)).toThrow(/no process/);
  expect(() => processCpuMs(2 ** 22 + 7)).toThrow(/no process/);
});
