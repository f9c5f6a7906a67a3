import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

interface CpuProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: CpuProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface SelfTime {
  fn: string;
  selfMs: number;
  share: number;
}

/** Top functions by self time in one .cpuprofile (node --cpu-prof), grouped by function and location. */
export function summariseProfile(file: string, top = 15): { file: string; totalMs: number; top: SelfTime[] } {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const frameOf = new Map<number, string>();
  for (const n of profile.nodes) {
    const { functionName, url, lineNumber } = n.callFrame;
    const where = url ? `${url.replace(/^file:\/\//, '').replace(/^.*\/node_modules\//, '~/')}:${lineNumber + 1}` : '';
    frameOf.set(n.id, `${functionName || '(anonymous)'}${where ? ` ${where}` : ''}`);
  }
  const self = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const us = profile.timeDeltas[i] ?? 0;
    total += us;
    const key = frameOf.get(id) ?? '?';
    self.set(key, (self.get(key) ?? 0) + us);
  });
  return {
    file,
    totalMs: total / 1000,
    top: [...self]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([fn, us]) => ({ fn, selfMs: Math.round(us / 100) / 10, share: Math.round((us / total) * 1000) / 10 })),
  };
}

/** Every .cpuprofile under a directory (recursively). */
export function findProfiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir)) {
    const p = join(dir, entry);
    if (statSync(p).isDirectory()) out.push(...findProfiles(p));
    else if (entry.endsWith('.cpuprofile')) out.push(p);
  }
  return out;
}

if (require.main === module) {
  // node dist/profile-summary.js <dir-or-file> [top]
  const target = process.argv[2] ?? '.';
  const files = statSync(target).isDirectory() ? findProfiles(target) : [target];
  for (const f of files) {
    const s = summariseProfile(f, Number(process.argv[3] ?? 15));
    console.log(`\n${f} (${Math.round(s.totalMs)} ms sampled)`);
    for (const t of s.top) console.log(`${String(t.share).padStart(5)} %  ${String(t.selfMs).padStart(8)} ms  ${t.fn}`);
  }
}
