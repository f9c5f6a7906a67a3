import { createHash } from 'node:crypto';
import type { PackageRef } from '@safepkg/core';

/** A deterministic valid package for index i (same i, same package). */
export function pkg(i: number, namespace = 'test'): PackageRef {
  return {
    name: `com.${namespace}.app${i}`,
    versionCode: i % 7,
    signature: createHash('sha256').update(`${namespace}:${i}`).digest('hex'),
  };
}

export function pkgs(from: number, count: number, namespace = 'test'): PackageRef[] {
  return Array.from({ length: count }, (_, i) => pkg(from + i, namespace));
}
