import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

let clockTicks: number | null = null;

/** USER_HZ, the unit of /proc/<pid>/stat's times (100 on every Linux seen, asked anyway). */
function ticksPerSecond(): number {
  clockTicks ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  return clockTicks;
}

/**
 * CPU time (user + system, ms) a process has used so far, from /proc/<pid>/stat. Unlike
 * throughput, it barely depends on what else runs on the machine: a process descheduled by a
 * neighbour uses no CPU meanwhile, so CPU per checked package survives a busy box far better.
 */
export function processCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) is in parentheses and may hold spaces: count from after it.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of the whole line, so 11 and 12 after the name and state.
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return ((utime + stime) * 1000) / ticksPerSecond();
}

/** Total CPU ms of several processes. */
export function totalCpuMs(pids: readonly number[]): number {
  return pids.reduce((a, pid) => a + processCpuMs(pid), 0);
}
