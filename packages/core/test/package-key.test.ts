import { z } from 'zod';
import {
  MAX_NAME_LENGTH,
  ValidationError,
  formatPath,
  packageKey,
  packageRefSchema,
  parseOrThrow,
  parsePackageKey,
  partitionOf,
  type ErrorDetail,
  type PackageRef,
} from '@safepkg/core';
import { pkgs } from '@safepkg/testkit';

const SIG = 'ab'.repeat(32);
const valid = { name: 'com.example.app', versionCode: 42, signature: SIG };
// The shape of a check request, as the API wraps packageRefSchema.
const bodySchema = z.strictObject({ packages: z.array(packageRefSchema) });

function detailsOf(schema: z.ZodType, input: unknown): ErrorDetail[] {
  try {
    parseOrThrow(schema, input);
  } catch (err) {
    if (err instanceof ValidationError) {
      expect(err.code).toBe('invalid_request');
      return err.details;
    }
    throw err;
  }
  throw new Error('input was accepted');
}

const badPaths = (input: unknown) => detailsOf(packageRefSchema, input).map((d) => d.path);

describe('name', () => {
  test.each([
    'com.example.app',
    'a.b',
    'Com.Example_1.App_2',
    'org.x_y.z9',
    `a.${'b'.repeat(MAX_NAME_LENGTH - 2)}`,
  ])('%s is accepted', (name) => {
    expect(parseOrThrow(packageRefSchema, { ...valid, name }).name).toBe(name);
  });

  test.each([
    ['no dot', 'comexampleapp'],
    ['empty', ''],
    ['leading digit', '1com.example'],
    ['segment starting with a digit', 'com.1example'],
    ['segment starting with an underscore', 'com._example'],
    ['empty segment', 'com..example'],
    ['trailing dot', 'com.example.'],
    ['hyphen', 'com.my-app'],
    ['colon (would break the package key)', 'com.example:app'],
    ['space', 'com.example app'],
    ['non-ASCII letter', 'com.exämple'],
    ['too long', `a.${'b'.repeat(MAX_NAME_LENGTH - 1)}`],
    ['not a string', 42],
    ['null', null],
  ])('%s is refused', (_why, name) => {
    expect(badPaths({ ...valid, name })).toEqual(['name']);
  });

  test('the length rule has its own message', () => {
    expect(detailsOf(packageRefSchema, { ...valid, name: `a.${'b'.repeat(300)}` })).toEqual([
      { path: 'name', message: 'must be at most 255 characters' },
    ]);
  });
});

describe('versionCode', () => {
  test.each([0, 1, 2 ** 31, Number.MAX_SAFE_INTEGER])('%d is accepted', (versionCode) => {
    expect(parseOrThrow(packageRefSchema, { ...valid, versionCode }).versionCode).toBe(versionCode);
  });

  test.each([
    ['negative', -1],
    ['fraction', 1.5],
    ['2^53', 2 ** 53],
    ['huge', 1e300],
    ['Infinity', Infinity],
    ['NaN', NaN],
    ['numeric string', '42'],
    ['null', null],
    ['boolean', true],
  ])('%s is refused', (_why, versionCode) => {
    expect(badPaths({ ...valid, versionCode })).toEqual(['versionCode']);
  });
});

describe('signature', () => {
  test('64 hex characters are accepted and answered lower-case', () => {
    const upper = 'AB'.repeat(16) + 'cd'.repeat(16);
    expect(parseOrThrow(packageRefSchema, { ...valid, signature: upper }).signature).toBe(
      upper.toLowerCase(),
    );
  });

  test.each([
    ['63 characters', 'a'.repeat(63)],
    ['65 characters', 'a'.repeat(65)],
    ['non-hex', 'g'.repeat(64)],
    ['0x prefix', `0x${'a'.repeat(62)}`],
    ['surrounding space', ` ${'a'.repeat(64)}`],
    ['empty', ''],
    ['a number', 1234],
  ])('%s is refused', (_why, signature) => {
    expect(badPaths({ ...valid, signature })).toEqual(['signature']);
  });
});

describe('objects', () => {
  test('unknown fields are refused by name; missing fields are listed', () => {
    expect(detailsOf(packageRefSchema, { ...valid, extra: 1, other: 'x' })).toEqual([
      { path: 'extra', message: 'is not a known field' },
      { path: 'other', message: 'is not a known field' },
    ]);
    expect(badPaths({}).sort()).toEqual(['name', 'signature', 'versionCode']);
    expect(badPaths(null)).toEqual(['(body)']);
    expect(badPaths([valid])).toEqual(['(body)']);
  });

  test('every bad field of every package is listed once, with its path, in input order', () => {
    const input = {
      packages: [
        valid,
        { ...valid, name: 'nodots', versionCode: -1 },
        valid,
        { ...valid, signature: 'zz' },
        { ...valid, colour: 'red' },
        { name: 'a.b', versionCode: 1 },
        // Breaking two rules of one field reports the field once.
        { ...valid, name: `${'1'.repeat(300)}` },
      ],
      extra: true,
    };
    expect(detailsOf(bodySchema, input).map((d) => d.path)).toEqual([
      'packages[1].name',
      'packages[1].versionCode',
      'packages[3].signature',
      'packages[4].colour',
      'packages[5].signature',
      'packages[6].name',
      'extra',
    ]);
  });

  test('formatPath writes array indexes in brackets and names with dots', () => {
    expect(formatPath(['packages', 3, 'signature'])).toBe('packages[3].signature');
    expect(formatPath([0, 'name'])).toBe('[0].name');
    expect(formatPath(['evaluations', 10, 'threatIndex'])).toBe('evaluations[10].threatIndex');
    expect(formatPath([])).toBe('(body)');
  });
});

describe('package key', () => {
  test('packageKey and parsePackageKey round-trip', () => {
    for (const ref of [
      ...pkgs(0, 50, 'key'),
      { name: 'a.b', versionCode: Number.MAX_SAFE_INTEGER, signature: SIG },
    ]) {
      const key = packageKey(ref);
      expect(key).toBe(`${ref.name}:${ref.versionCode}:${ref.signature}`);
      expect(parsePackageKey(key)).toEqual(ref);
    }
  });

  test.each(['', 'no-colons', 'one:colon', ':1:sig'])(
    'malformed key %j fails with a ValidationError',
    (key) => {
      expect(() => parsePackageKey(key)).toThrow(ValidationError);
    },
  );
});

describe('partitionOf', () => {
  // Pinned: changing the hash would move pending entries to partitions nobody reads.
  test.each([
    // Values computed outside this code base (32-bit FNV-1a of the key's bytes, mod n).
    ['com.example.app:42:' + SIG, 16, 13],
    ['com.example.app:42:' + SIG, 1024, 205],
    ['a.b:0:' + '0'.repeat(64), 16, 4],
    ['org.mozilla.firefox:2015942001:' + 'f'.repeat(64), 16, 0],
    ['', 16, 5],
    ['a', 1_000_000, 0xe40c292c % 1_000_000],
  ])('%s mod %d is %d', (key, partitions, expected) => {
    expect(partitionOf(key, partitions)).toBe(expected);
  });

  test('hashes the UTF-16 code units of any string, as charCodeAt would: non-ASCII, lone surrogates, keys longer than its scratch buffer', () => {
    const byCharCode = (key: string, partitions: number) => {
      let h = 0x811c9dc5;
      for (let i = 0; i < key.length; i++) {
        h ^= key.charCodeAt(i);
        h = Math.imul(h, 0x01000193);
      }
      return (h >>> 0) % partitions;
    };
    const keys = [
      'héllo.wörld:1:' + SIG,
      '日本語:1:ab',
      '\ud800x',
      'x\udfff',
      '💥:2:ff',
      'a'.repeat(300),
      'b'.repeat(5000),
      'c'.repeat(10),
      ...pkgs(0, 200, 'units').map(packageKey),
    ];
    for (const key of keys)
      expect([key, partitionOf(key, 1_000_003)]).toEqual([key, byCharCode(key, 1_000_003)]);
  });

  test('is in range and spreads keys over every partition', () => {
    for (const partitions of [1, 3, 16, 1024]) {
      const seen = new Set<number>();
      for (const ref of pkgs(0, 5000, 'spread')) {
        const p = partitionOf(packageKey(ref), partitions);
        expect(Number.isInteger(p) && p >= 0 && p < partitions).toBe(true);
        seen.add(p);
      }
      // 5,000 keys reach every one of a few partitions, and nearly all of 1,024.
      if (partitions <= 16) expect(seen.size).toBe(partitions);
      else expect(seen.size).toBeGreaterThan(900);
    }
  });

  test('same key, same partition (no hidden state)', () => {
    const keys = pkgs(0, 200, 'stable').map((r: PackageRef) => packageKey(r));
    const first = keys.map((k) => partitionOf(k, 16));
    expect(keys.map((k) => partitionOf(k, 16))).toEqual(first);
  });
});
