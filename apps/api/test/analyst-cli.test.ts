import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { PackageStore } from '@safepkg/core';
import { pkgs, useTestContext } from '@safepkg/testkit';
import { serveApp, type TestServer } from './helpers';

// The built CLI, as an analyst runs it (npm test builds before testing).
const CLI = resolve(__dirname, '..', 'dist', 'cli', 'analyst.js');
const TOKEN = 'analyst-cli-token-0123456789';
const ctx = useTestContext({ adminToken: TOKEN });

let server: TestServer;
let dir: string;
beforeAll(async () => {
  server = await serveApp(ctx);
  dir = mkdtempSync(join(tmpdir(), 'safepkg-analyst-'));
});
afterAll(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

async function analyst(args: string[], env: Record<string, string> = {}) {
  try {
    const { stdout } = await promisify(execFile)(process.execPath, [CLI, ...args], {
      env: { ...process.env, SAFEPKG_URL: server.url, ADMIN_TOKEN: TOKEN, SAFEPKG_ACTOR: 'carol', ...env },
    });
    return { code: 0, stdout, stderr: '' };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

function file(name: string, content: unknown): string {
  const path = join(dir, name);
  writeFileSync(path, JSON.stringify(content));
  return path;
}

test('claim, submit, submit-signers and show, against the real api', async () => {
  const [a, b] = pkgs(0, 2, 'cli');
  await new PackageStore(ctx.db.pool).insertBatch([a!, b!].map((ref) => ({ ref, firstSeenAt: new Date() })));
  const claim = await analyst(['claim', '--limit', '1000']);
  expect(claim.code).toBe(0);
  const claimed = JSON.parse(claim.stdout) as { packages: { name: string }[] };
  expect(claimed.packages.map((p) => p.name)).toEqual(expect.arrayContaining([a!.name, b!.name]));

  const submit = await analyst(['submit', file('todo.json', [{ ...a, verdict: 'safe', threatIndex: 0.1 }])]);
  expect(submit.code).toBe(0);
  const signers = await analyst([
    'submit-signers',
    file('signers.json', [{ signature: b!.signature, verdict: 'malicious', threatIndex: 0.95 }]),
  ]);
  expect(signers.code).toBe(0);

  const showA = await analyst(['show', a!.name, String(a!.versionCode), a!.signature]);
  expect(showA.code).toBe(0);
  expect(JSON.parse(showA.stdout)).toMatchObject({
    status: 'safe',
    source: 'manual',
    evaluations: [{ verdict: 'safe', createdBy: 'carol' }],
    answer: { status: 'safe', basis: 'package' },
  });
  const showB = JSON.parse((await analyst(['show', b!.name, String(b!.versionCode), b!.signature])).stdout);
  expect(showB).toMatchObject({
    status: 'unknown',
    signer: { status: 'malicious', source: 'manual' },
    answer: { status: 'malicious', basis: 'signer' },
  });
});

test('usage errors exit 2; an api error exits 1 with the answer', async () => {
  expect((await analyst(['show', 'only-a-name'])).code).toBe(2);
  expect((await analyst(['claim'], { ADMIN_TOKEN: '' })).code).toBe(2);
  const missing = await analyst(['show', 'com.never.seen', '1', 'e'.repeat(64)]);
  expect(missing.code).toBe(1);
  expect(missing.stderr).toContain('404');
  const denied = await analyst(['claim'], { ADMIN_TOKEN: 'wrong-token-000000000000' });
  expect(denied.code).toBe(1);
  expect(denied.stderr).toContain('401');
});
