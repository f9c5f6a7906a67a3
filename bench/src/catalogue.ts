import { createHash } from 'node:crypto';
import type { PackageRef } from '@safepkg/core';
import { Random, Zipf } from './random';

export interface CatalogueOptions {
  seed: number;
  /** Apps already in PostgreSQL before a run (seeded into the template database). */
  knownApps: number;
  /** Zipf exponent of the known apps' popularity. */
  knownExponent: number;
  /** Newly released apps that many devices report at once (never in PostgreSQL at start). */
  hotApps: number;
  hotExponent: number;
}

/** The catalogue every benchmark run uses (200,000 known apps, 2,000 hot ones, Zipf(1) both). */
export function benchCatalogue(seed: number): CatalogueOptions {
  return { seed, knownApps: 200_000, knownExponent: 1.0, hotApps: 2_000, hotExponent: 1.0 };
}

export type PackageKind = 'known' | 'hot' | 'tail';

function signatureOf(namespace: string, i: number): string {
  return createHash('sha256').update(`${namespace}:${i}`).digest('hex');
}

/**
 * The apps devices can report: a Zipf-popular set of known apps, a hot set of new
 * releases, and an unbounded long tail of never-seen packages. A known or hot package's
 * JSON fragment is kept once made, so a request body costs mostly a string join, not a
 * hash and a JSON.stringify per package (the load generator shares the machine's cores).
 */
export class Catalogue {
  readonly knownZipf: Zipf;
  readonly hotZipf: Zipf;
  private readonly knownFragments: string[];
  private readonly hotFragments: string[];

  constructor(readonly options: CatalogueOptions) {
    this.knownZipf = new Zipf(options.knownApps, options.knownExponent);
    this.hotZipf = new Zipf(Math.max(1, options.hotApps), options.hotExponent);
    this.knownFragments = new Array<string>(options.knownApps);
    this.hotFragments = new Array<string>(options.hotApps);
  }

  known(i: number): PackageRef {
    return {
      name: `com.known${i % 97}.app${i}`,
      versionCode: 1 + (i % 50),
      signature: signatureOf(`known${this.options.seed}`, i),
    };
  }

  hot(i: number): PackageRef {
    return {
      name: `io.hot${this.options.seed}.release${i}`,
      versionCode: 1,
      signature: signatureOf(`hot${this.options.seed}`, i),
    };
  }

  /** A never-seen package: unique for each (stream, n); the signature is random but deterministic. */
  tail(stream: string, n: number, rng: Random): PackageRef {
    let signature = '';
    for (let j = 0; j < 8; j++) signature += rng.hex8();
    return { name: `org.tail${stream}.pkg${n}`, versionCode: n % 1000, signature };
  }

  knownFragment(i: number): string {
    return (this.knownFragments[i] ??= JSON.stringify(this.known(i)));
  }

  hotFragment(i: number): string {
    return (this.hotFragments[i] ??= JSON.stringify(this.hot(i)));
  }
}
