import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

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
  const t = statTimes(pid);
  if (!t) throw new Error(`no process ${pid}`);
  return ((t.utime + t.stime) * 1000) / ticksPerSecond();
}

interface StatTimes {
  ppid: number;
  utime: number;
  stime: number;
  /** CPU of the children it has waited for (reaped), in ticks. */
  cutime: number;
  cstime: number;
}

/** The times of /proc/<pid>/stat, or null once the process is gone. */
function statTimes(pid: number): StatTimes | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) is in parentheses and may hold spaces: count from after it.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 4 and 14-17 of the whole line: ppid, utime, stime, cutime, cstime.
  return {
    ppid: Number(f[1]),
    utime: Number(f[11]),
    stime: Number(f[12]),
    cutime: Number(f[13]),
    cstime: Number(f[14]),
  };
}

/**
 * CPU ms a forking server (PostgreSQL's postmaster) and every process it forked have used so
 * far: its own time and its reaped children's (cutime/cstime: a backend that exited is counted
 * there once the postmaster waited for it), plus each live child's own and reaped times. A
 * child reaped while /proc is scanned would be counted in neither place, so the scan is
 * repeated until the postmaster's reaped times did not change across it.
 */
export function serverTreeCpuMs(rootPid: number): number {
  const all = (t: StatTimes) => t.utime + t.stime + t.cutime + t.cstime;
  const reaped = (t: StatTimes) => t.cutime + t.cstime;
  for (let attempt = 0; ; attempt++) {
    const root = statTimes(rootPid);
    if (!root) throw new Error(`no process ${rootPid}`);
    let ticks = all(root);
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      const t = statTimes(Number(entry));
      if (t && t.ppid === rootPid) ticks += all(t);
    }
    const after = statTimes(rootPid);
    if (!after) throw new Error(`no process ${rootPid}`);
    if (reaped(after) === reaped(root) || attempt >= 10) return (ticks * 1000) / ticksPerSecond();
  }
}

/** Total CPU ms of several processes. */
export function totalCpuMs(pids: readonly number[]): number {
  return pids.reduce((a, pid) => a + processCpuMs(pid), 0);
}
