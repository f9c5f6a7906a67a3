import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';

// The alerting rules and their unit tests, checked by Prometheus' own promtool (Debian's
// `prometheus` package; .ci/run installs it). Without promtool this fails rather than skips:
// rules nobody evaluates drift silently.

const run = promisify(execFile);
const DIR = join(__dirname, '..', '..', 'infra', 'prometheus');

async function promtool(...args: string[]) {
  return run('promtool', args, { cwd: DIR });
}

test('promtool accepts every alerting rule', async () => {
  const { stdout } = await promtool('check', 'rules', 'alerts.yml');
  expect(stdout).toMatch(/SUCCESS: \d+ rules found/);
});

test('promtool runs the rules unit tests (alerts.test.yml) and every one passes', async () => {
  const { stdout, stderr } = await promtool('test', 'rules', 'alerts.test.yml');
  expect(`${stdout}${stderr}`).toMatch(/SUCCESS/);
});
