#!/usr/bin/env node
/**
 * safepkg-analyst: a small client of the admin API for analysts.
 *
 *   safepkg-analyst claim [--limit N]     claim packages waiting for analysis, print them as JSON
 *   safepkg-analyst submit <file.json>    post verdicts: a JSON array of evaluations (claim output with
 *                                         verdict, threatIndex and optionally source added; source defaults to manual)
 *   safepkg-analyst submit-signers <file.json>
 *                                         post signing-certificate verdicts: a JSON array of
 *                                         {signature, verdict, threatIndex, source?} (source defaults to manual)
 *   safepkg-analyst show <name> <versionCode> <signature>
 *                                         one package: seen, reports, its own verdict and history,
 *                                         its signer's verdict, the answer a check gives, analysis state
 *
 * Environment: SAFEPKG_URL (default http://127.0.0.1:8080), ADMIN_TOKEN (required),
 * SAFEPKG_ACTOR (optional, recorded as the evaluations' author).
 */
import { readFileSync } from 'node:fs';

class UsageError extends Error {}

async function call(path: string, body?: unknown): Promise<unknown> {
  const base = process.env.SAFEPKG_URL ?? 'http://127.0.0.1:8080';
  const token = process.env.ADMIN_TOKEN;
  if (!token) throw new UsageError('ADMIN_TOKEN is not set');
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    authorization: `Bearer ${token}`,
  };
  if (process.env.SAFEPKG_ACTOR) headers['x-actor'] = process.env.SAFEPKG_ACTOR;
  const res = await fetch(
    new URL(path, base),
    body === undefined ? { headers } : { method: 'POST', headers, body: JSON.stringify(body) },
  );
  const text = await res.text();
  if (!res.ok) throw new Error(`${path} answered ${res.status}: ${text}`);
  return JSON.parse(text) as unknown;
}

/** The evaluations of a file: an array, or an object with an `evaluations` array. */
function readList(file: string): Record<string, unknown>[] {
  const parsed = JSON.parse(readFileSync(file, 'utf8')) as unknown;
  const list = Array.isArray(parsed) ? parsed : (parsed as { evaluations?: unknown }).evaluations;
  if (!Array.isArray(list)) throw new UsageError('the file must hold an array of evaluations');
  return list as Record<string, unknown>[];
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === 'claim') {
    const i = rest.indexOf('--limit');
    const limit = i >= 0 ? Number(rest[i + 1]) : 10;
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
      throw new UsageError('--limit must be 1..1000');
    console.log(JSON.stringify(await call('/v1/admin/analysis/claim', { limit }), null, 2));
    return;
  }
  if (command === 'submit' && rest[0]) {
    // Claim output annotated with verdicts is accepted as is: fields other than these are dropped.
    const evaluations = readList(rest[0]).map((e) => ({
      name: e.name,
      versionCode: e.versionCode,
      signature: e.signature,
      verdict: e.verdict,
      source: e.source ?? 'manual',
      threatIndex: e.threatIndex,
    }));
    console.log(JSON.stringify(await call('/v1/admin/evaluations', { evaluations })));
    return;
  }
  if (command === 'submit-signers' && rest[0]) {
    const evaluations = readList(rest[0]).map((e) => ({
      signature: e.signature,
      verdict: e.verdict,
      source: e.source ?? 'manual',
      threatIndex: e.threatIndex,
    }));
    console.log(JSON.stringify(await call('/v1/admin/signer-evaluations', { evaluations })));
    return;
  }
  if (command === 'show' && rest.length === 3) {
    const path = `/v1/admin/packages/${rest.map((p) => encodeURIComponent(p as string)).join('/')}`;
    console.log(JSON.stringify(await call(path), null, 2));
    return;
  }
  throw new UsageError(
    'usage: safepkg-analyst claim [--limit N] | submit <file.json> | submit-signers <file.json> | show <name> <versionCode> <signature>',
  );
}

main(process.argv.slice(2)).catch((err: unknown) => {
  console.error(`safepkg-analyst: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(err instanceof UsageError ? 2 : 1);
});
