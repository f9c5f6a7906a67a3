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

/** Where a frame's code lives: a dependency, node itself, the safepkg workspaces, or V8's own buckets. */
function moduleOf(url: string, functionName: string): string {
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  const dep = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (dep) return dep[1] as string;
  if (url.startsWith('node:')) return 'node (core)';
  const own = /\/(apps|packages)\/([^/]+)\//.exec(url);
  return own ? `safepkg ${own[2]}` : url;
}

/** Top functions by self time in one .cpuprofile (node --cpu-prof), grouped by function and location, and by module. */
export function summariseProfile(
  file: string,
  top = 15,
): { file: string; totalMs: number; top: SelfTime[]; byModule: SelfTime[] } {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const frameOf = new Map<number, string>();
  const moduleOfNode = new Map<number, string>();
  for (const n of profile.nodes) {
    const { functionName, url, lineNumber } = n.callFrame;
    moduleOfNode.set(n.id, moduleOf(url, functionName));
    const where = url
      ? `${url.replace(/^file:\/\//, '').replace(/^.*\/node_modules\//, '~/')}:${lineNumber + 1}`
      : '';
    frameOf.set(n.id, `${functionName || '(anonymous)'}${where ? ` ${where}` : ''}`);
  }
  const self = new Map<string, number>();
  const byModule = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const us = profile.timeDeltas[i] ?? 0;
    total += us;
    const key = frameOf.get(id) ?? '?';
    self.set(key, (self.get(key) ?? 0) + us);
    const m = moduleOfNode.get(id) ?? '?';
    byModule.set(m, (byModule.get(m) ?? 0) + us);
  });
  const ranked = (m: Map<string, number>) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([fn, us]) => ({
        fn,
        selfMs: Math.round(us / 100) / 10,
        share: Math.round((us / total) * 1000) / 10,
      }));
  return { file, totalMs: total / 1000, top: ranked(self), byModule: ranked(byModule) };
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
    for (const t of s.top)
      console.log(`${String(t.share).padStart(5)} %  ${String(t.selfMs).padStart(8)} ms  ${t.fn}`);
    console.log('  by module:');
    for (const t of s.byModule)
      console.log(`${String(t.share).padStart(5)} %  ${String(t.selfMs).padStart(8)} ms  ${t.fn}`);
  }
}
