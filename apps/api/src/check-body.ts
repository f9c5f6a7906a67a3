import {
  MAX_NAME_LENGTH,
  MAX_PACKAGES_PER_REQUEST,
  NAME_PATTERN,
  parseOrThrow,
  SIGNATURE_PATTERN,
} from '@safepkg/core';
import type { PackageRef } from '@safepkg/core';
import { checkBodySchema } from './schemas';

function isPlainRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && Object.getPrototypeOf(v) === Object.prototype;
}

/** Exactly the three fields of a package reference, each as checkBodySchema wants it; else null. */
function wellFormedRef(p: unknown): PackageRef | null {
  if (!isPlainRecord(p)) return null;
  let keys = 0;
  for (const k in p) {
    if (k !== 'name' && k !== 'versionCode' && k !== 'signature') return null;
    keys++;
  }
  if (keys !== 3) return null;
  const { name, versionCode, signature } = p;
  if (typeof name !== 'string' || name.length > MAX_NAME_LENGTH || !NAME_PATTERN.test(name)) return null;
  if (typeof versionCode !== 'number' || !Number.isSafeInteger(versionCode) || versionCode < 0) return null;
  if (typeof signature !== 'string' || !SIGNATURE_PATTERN.test(signature)) return null;
  return { name, versionCode, signature: signature.toLowerCase() };
}

/**
 * The check body when it is well formed, without zod's generic machinery (per-field issue
 * collection, a result object per value): what every real device sends. Anything it is not
 * sure of — one odd field anywhere — returns null and goes to zod, which stays the only
 * authority for errors. It may only accept bodies zod accepts, with zod's output
 * (check-body.test.ts checks both with generated bodies).
 */
export function fastCheckBody(body: unknown): PackageRef[] | null {
  if (!isPlainRecord(body)) return null;
  for (const k in body) if (k !== 'packages') return null;
  const packages = body.packages;
  if (!Array.isArray(packages) || packages.length < 1 || packages.length > MAX_PACKAGES_PER_REQUEST)
    return null;
  const out = new Array<PackageRef>(packages.length);
  for (let i = 0; i < packages.length; i++) {
    const ref = wellFormedRef(packages[i]);
    if (!ref) return null;
    out[i] = ref;
  }
  return out;
}

/** The packages of a check body: the fast path, else zod (which throws the 400's ValidationError). */
export function parseCheckBody(body: unknown): PackageRef[] {
  return fastCheckBody(body) ?? parseOrThrow(checkBodySchema, body).packages;
}
