import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { useTestContext } from '@safepkg/testkit';
import { serveApp, type TestServer } from './helpers';

const ctx = useTestContext({ bufferPartitions: 1 });
const CONFIG_DIR = join(__dirname, '..', 'openapi-lint');
// Resolved like any dependency (hoisted to the root node_modules by npm workspaces).
const REDOCLY = require.resolve('@redocly/cli/bin/cli.js');

interface LintReport {
  totals: { errors: number; warnings: number; ignored: number };
  problems: { ruleId: string; severity: string; message: string; location: { pointer: string }[] }[];
}

let server: TestServer;
let dir: string;
beforeAll(async () => {
  server = await serveApp(ctx);
  dir = mkdtempSync(join(tmpdir(), 'safepkg-openapi-lint-'));
});
afterAll(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

test('the served OpenAPI document passes `redocly lint` (recommended rules): no errors, no warnings beyond the listed exceptions', async () => {
  const res = await server.request('GET', '/openapi.json');
  expect(res.status).toBe(200);
  writeFileSync(join(dir, 'openapi.json'), JSON.stringify(res.body, null, 2));
  for (const f of ['redocly.yaml', '.redocly.lint-ignore.yaml'])
    copyFileSync(join(CONFIG_DIR, f), join(dir, f));

  // Exits non-zero when there are errors; the JSON report is printed either way.
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [REDOCLY, 'lint', 'openapi.json', '--config', 'redocly.yaml', '--format', 'json'],
    { cwd: dir, env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' } },
  ).catch((err: { stdout?: string }) => ({ stdout: err.stdout ?? '' }));
  const report = JSON.parse(stdout) as LintReport;
  const problems = report.problems.map(
    (p) => `${p.severity} ${p.ruleId} ${p.location[0]?.pointer ?? ''}: ${p.message}`,
  );
  expect(problems).toEqual([]);
  expect(report.totals).toMatchObject({ errors: 0, warnings: 0 });
  // Every exception in .redocly.lint-ignore.yaml still matches a problem: a stale entry is removed, not kept.
  const exceptions = readFileSync(join(CONFIG_DIR, '.redocly.lint-ignore.yaml'), 'utf8').match(/^\s+- '#/gm);
  expect(report.totals.ignored).toBe(exceptions?.length);
});
