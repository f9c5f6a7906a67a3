import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

// There is no Docker engine here: these are the checks a linter (hadolint) and a dry run of
// the build's file plumbing would make, against the real Dockerfile and real `turbo prune` output.

const run = promisify(execFile);
const ROOT = join(__dirname, '..', '..');
const DOCKERFILE = join(ROOT, 'infra', 'docker', 'Dockerfile');
const APPS = ['api', 'flusher'] as const;

interface Instruction {
  op: string;
  args: string;
  line: number;
}

interface Stage {
  from: string;
  name: string | null;
  instructions: Instruction[];
}

/** Instructions with continuation lines joined and comments dropped, grouped by stage. */
function parseDockerfile(text: string): { globalArgs: Map<string, string>; stages: Stage[] } {
  const instructions: Instruction[] = [];
  let pending = '';
  let start = 0;
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (pending === '' && (line === '' || line.startsWith('#'))) return;
    if (pending === '') start = i + 1;
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1)} `;
      return;
    }
    const full = pending + line;
    pending = '';
    const m = /^(\w+)\s+(.*)$/s.exec(full);
    if (!m) throw new Error(`line ${start}: cannot parse "${full}"`);
    instructions.push({ op: (m[1] as string).toUpperCase(), args: (m[2] as string).trim(), line: start });
  });
  const globalArgs = new Map<string, string>();
  const stages: Stage[] = [];
  for (const ins of instructions) {
    if (ins.op === 'FROM') {
      const [from, as, name] = ins.args.split(/\s+/);
      stages.push({
        from: from as string,
        name: as?.toUpperCase() === 'AS' ? (name ?? null) : null,
        instructions: [],
      });
    } else if (stages.length === 0) {
      if (ins.op !== 'ARG') throw new Error(`line ${ins.line}: ${ins.op} before the first FROM`);
      const [k, v] = ins.args.split('=');
      globalArgs.set(k as string, v ?? '');
    } else {
      (stages[stages.length - 1] as Stage).instructions.push(ins);
    }
  }
  return { globalArgs, stages };
}

const text = readFileSync(DOCKERFILE, 'utf8');
const { globalArgs, stages } = parseDockerfile(text);
const stage = (name: string) => stages.find((s) => s.name === name) as Stage;
const runtime = stages[stages.length - 1] as Stage;
const all = (s: Stage, op: string) => s.instructions.filter((i) => i.op === op);
const expand = (s: string, vars: Map<string, string>) =>
  s.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a, b) => vars.get(a ?? b) ?? '');

test('every base image is pinned to an exact version, never latest', () => {
  expect(stages.length).toBeGreaterThanOrEqual(3);
  for (const s of stages) {
    const image = expand(s.from, globalArgs);
    if (stages.some((o) => o.name === image)) continue; // FROM an earlier stage
    expect(image).toMatch(/^[\w./-]+:[\w.-]+$/);
    expect(image).not.toMatch(/:latest$/);
    // A full version (major.minor.patch), not a floating major like node:20.
    expect(image).toMatch(/:\d+\.\d+\.\d+/);
  }
});

test('the stages are prune → install + build → slim runtime with production dependencies only', () => {
  expect(stages.map((s) => s.name)).toEqual(['prune', 'build', 'runtime']);
  const prune = all(stage('prune'), 'RUN').map((r) => r.args);
  expect(prune.some((r) => /turbo prune "?@safepkg\/\$\{APP\}"? --docker/.test(r))).toBe(true);
  // Tools installed globally carry an exact version.
  for (const r of prune.filter((x) => /npm install --global/.test(x))) expect(r).toMatch(/\w@\d+\.\d+\.\d+/);

  // The prune stage's turbo is the one the lockfile pins for everyone else.
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { version?: string }>;
  };
  const turbo = lock.packages['node_modules/turbo']?.version as string;
  expect(prune.some((r) => r.includes(`turbo@${turbo}`))).toBe(true);

  const build = all(stage('build'), 'RUN').map((r) => r.args);
  expect(build[0]).toMatch(/^npm ci\b/);
  expect(build.some((r) => /turbo run build --filter="?@safepkg\/\$\{APP\}"?/.test(r))).toBe(true);

  const installs = all(runtime, 'RUN').map((r) => r.args);
  expect(installs).toHaveLength(1);
  const steps = (installs[0] as string).split(/\s+&&\s+/);
  const ciAt = steps.findIndex((x) => x.startsWith('npm ci '));
  for (const flag of [
    '--omit=dev',
    '--workspace="@safepkg/${APP}"',
    '--ignore-scripts',
    '--no-audit',
    '--no-fund',
  ]) {
    expect(steps[ciAt]).toContain(flag);
  }
  // The test-only workspace is dropped before the install, so its dependencies stay out.
  const dropAt = steps.findIndex((x) => x.includes("w !== 'packages/testkit'"));
  const rmAt = steps.indexOf('rm -rf packages/testkit');
  expect([dropAt >= 0, rmAt >= 0, dropAt < ciAt, rmAt < ciAt]).toEqual([true, true, true, true]);
  // No `npm install` anywhere but the pinned global tool: builds come from the lockfile.
  for (const s of stages) {
    for (const r of all(s, 'RUN'))
      if (/npm (i|install)\b/.test(r.args))
        expect(r.args).toMatch(/^npm install --global .*\bturbo@\d+\.\d+\.\d+$/);
  }
  // The runtime copies built output, never the build stage's node_modules (dev dependencies).
  for (const c of all(runtime, 'COPY')) expect(c.args).not.toMatch(/node_modules/);
});

test('the runtime runs as a numeric non-root user, with a HEALTHCHECK on /healthz through node (no curl)', () => {
  const users = all(runtime, 'USER');
  expect(users.length).toBeGreaterThanOrEqual(1);
  const user = (users[users.length - 1] as Instruction).args;
  expect(user).toMatch(/^\d+(:\d+)?$/);
  expect(user.split(':')[0]).not.toBe('0');
  const userLine = (users[users.length - 1] as Instruction).line;
  const cmd = all(runtime, 'CMD')[0] as Instruction;
  expect(cmd.line).toBeGreaterThan(userLine);
  expect(JSON.parse(cmd.args)).toEqual(['node', 'dist/main.js']);

  const checks = all(runtime, 'HEALTHCHECK');
  expect(checks).toHaveLength(1);
  const hc = (checks[0] as Instruction).args;
  expect(hc).toMatch(/--interval=\d+s/);
  expect(hc).toMatch(/--timeout=\d+s/);
  const exec = JSON.parse(hc.slice(hc.indexOf('CMD') + 3).trim()) as string[];
  expect(exec.slice(0, 2)).toEqual(['node', '-e']);
  expect(exec[2]).toContain("fetch('http://127.0.0.1:'");
  expect(exec[2]).toContain('/healthz');
  expect(hc).not.toMatch(/\b(curl|wget)\b/);
  // Both apps' health ports, with the defaults from configDefaults().
  expect(exec[2]).toContain('process.env.PORT || 8080');
  expect(exec[2]).toContain('process.env.FLUSHER_PORT || 8081');
});

test('no ADD (and so no ADD of URLs), no secrets or latest tags anywhere', () => {
  expect(stages.flatMap((s) => all(s, 'ADD'))).toEqual([]);
  expect(text).not.toMatch(/:latest\b/);
  for (const s of stages) for (const e of all(s, 'ENV')) expect(e.args).not.toMatch(/TOKEN|PASSWORD|SECRET/i);
});

test('.dockerignore keeps dependencies, build output, git and env files out of the context', () => {
  const ignore = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  for (const p of ['.git', '**/node_modules', '**/dist', '.env']) expect(ignore).toContain(p);
});

describe.each(APPS)('turbo prune @safepkg/%s --docker has everything the Dockerfile copies', (app) => {
  let out: string;
  beforeAll(async () => {
    out = mkdtempSync(join(tmpdir(), `safepkg-prune-${app}-`));
    await run(
      join(ROOT, 'node_modules', '.bin', 'turbo'),
      ['prune', `@safepkg/${app}`, '--docker', '--out-dir', out],
      {
        cwd: ROOT,
        env: { ...process.env, TURBO_TELEMETRY_DISABLED: '1' },
        timeout: 60000,
      },
    );
  });
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  test('prune output, build output and context files line up with every COPY', () => {
    const vars = new Map([...globalArgs, ['APP', app]]);
    // The prune stage runs `--out-dir /out`; map it to this run's directory.
    const fromPrune = (p: string) => join(out, expand(p, vars).replace(/^\/out\/?/, ''));
    // What the build stage holds: the pruned full tree, tsconfig.base.json, and each workspace's dist.
    const builtWorkspaces = ['packages/core', `apps/${app}`];
    const fromBuild = (p: string) => {
      const rel = expand(p, vars).replace(/^\/repo\//, '');
      const ws = builtWorkspaces.find((w) => rel === `${w}/dist` || rel.startsWith(`${w}/dist/`));
      if (ws) {
        // Built by `tsc -p tsconfig.build.json` into dist (checked on the workspace's real config).
        const cfg = JSON.parse(readFileSync(join(ROOT, ws, 'tsconfig.build.json'), 'utf8')) as {
          compilerOptions: { outDir: string };
        };
        expect(cfg.compilerOptions.outDir).toBe('dist');
        return join(out, 'full', ws, 'package.json');
      }
      return join(out, 'full', rel);
    };
    let checked = 0;
    for (const s of stages) {
      for (const c of all(s, 'COPY')) {
        const parts = c.args.split(/\s+/);
        const from = parts.find((p) => p.startsWith('--from='))?.slice('--from='.length);
        const sources = parts.filter((p) => !p.startsWith('--')).slice(0, -1);
        for (const src of sources) {
          const path =
            from === 'prune'
              ? fromPrune(src)
              : from === 'build'
                ? fromBuild(src)
                : join(ROOT, expand(src, vars));
          expect([c.line, src, existsSync(path)]).toEqual([c.line, src, true]);
          checked++;
        }
      }
    }
    expect(checked).toBeGreaterThanOrEqual(7);
    // The runtime's `npm ci --workspace` needs the lockfile and the app's manifest in json/.
    for (const f of [
      'package-lock.json',
      'package.json',
      `apps/${app}/package.json`,
      'packages/core/package.json',
    ]) {
      expect(statSync(join(out, 'json', f)).isFile()).toBe(true);
    }
    // The runtime needs core's Lua scripts and migrations next to its dist (read via __dirname).
    expect(existsSync(join(out, 'full', 'packages', 'core', 'lua', 'buffer-add.lua'))).toBe(true);
    expect(existsSync(join(out, 'full', 'packages', 'core', 'migrations'))).toBe(true);
    // tsconfig.base.json is not in the prune output, which is why the build stage copies it from the context.
    expect(existsSync(join(out, 'full', 'tsconfig.base.json'))).toBe(false);
  });
});
