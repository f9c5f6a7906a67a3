import fc from 'fast-check';
import { ValidationError } from '@safepkg/core';
import { checkBodySchema } from '../src/schemas';
import { fastCheckBody, parseCheckBody } from '../src/check-body';

// The fast path may only accept what zod accepts, with zod's output; zod keeps every error.

const hex = (n: number) =>
  fc.string({ unit: fc.constantFrom(...'0123456789abcdefABCDEF'), minLength: n, maxLength: n });
const segment = fc.stringMatching(/^[A-Za-z][A-Za-z0-9_]{0,8}$/);
const goodName = fc.array(segment, { minLength: 2, maxLength: 4 }).map((s) => s.join('.'));
const goodRef = fc.record({
  name: goodName,
  versionCode: fc.oneof(fc.nat(), fc.constantFrom(0, -0, Number.MAX_SAFE_INTEGER)),
  signature: hex(64),
});

/** Each field sometimes replaced by a near miss or a value of another type; keys added or dropped. */
const anyValue = fc.oneof(
  fc.string(),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.constantFrom(
    2 ** 53,
    -1,
    1.5,
    Number.MAX_VALUE,
    '42',
    'a'.repeat(64),
    'g'.repeat(64),
    `com.${'a'.repeat(252)}`,
  ),
  fc.array(fc.string(), { maxLength: 2 }),
  fc.dictionary(fc.string(), fc.string(), { maxKeys: 2 }),
);
/** A good ref with exactly one thing wrong or odd about it (so that this one thing decides). */
const field = fc.constantFrom('name', 'versionCode', 'signature');
const nearRef = fc.oneof(
  fc.record({ ref: goodRef, f: field, value: anyValue }).map(({ ref, f, value }) => ({ ...ref, [f]: value })),
  fc
    .record({
      ref: goodRef,
      k: fc.constantFrom('extra', '__proto__', 'constructor', 'Name'),
      value: anyValue,
    })
    .map(({ ref, k, value }) => ({ ...ref, [k]: value })),
  fc.record({ ref: goodRef, f: field }).map(({ ref, f }) => {
    const o: Record<string, unknown> = { ...ref };
    delete o[f];
    return o;
  }),
  fc
    .record({ ref: goodRef, n: fc.constantFrom(63, 65) })
    .map(({ ref, n }) => ({ ...ref, signature: ref.signature.padEnd(n, 'a').slice(0, n) })),
  fc.record({ ref: goodRef, n: fc.integer({ max: -1 }) }).map(({ ref, n }) => ({ ...ref, versionCode: n })),
);
const body = fc.oneof(
  fc.array(fc.oneof(goodRef, nearRef), { minLength: 0, maxLength: 4 }).map((packages) => ({ packages })),
  fc.record({ packages: fc.array(goodRef, { minLength: 1, maxLength: 3 }), other: anyValue }),
  anyValue.map((packages) => ({ packages })),
  anyValue,
);

// Through JSON, as express.json hands it over (JSON.parse makes "__proto__" an own key).
const overJson = (v: unknown): unknown => JSON.parse(JSON.stringify(v) ?? 'null');

describe('fastCheckBody', () => {
  it('accepts only bodies zod accepts, with the same output', () => {
    fc.assert(
      fc.property(body, (b) => {
        const input = overJson(b);
        const fast = fastCheckBody(input);
        if (fast === null) return;
        const zod = checkBodySchema.safeParse(input);
        expect(zod.success).toBe(true);
        expect(fast).toEqual(zod.data?.packages);
      }),
      { numRuns: 5000, seed: 1201 },
    );
  });

  it('takes every well-formed body (the common one) itself', () => {
    fc.assert(
      fc.property(fc.array(goodRef, { minLength: 1, maxLength: 50 }), (packages) => {
        const input = overJson({ packages });
        const fast = fastCheckBody(input);
        expect(fast).not.toBeNull();
        expect(fast).toEqual(checkBodySchema.parse(input).packages);
      }),
      { numRuns: 1000, seed: 1202 },
    );
  });

  it('lower-cases the signature as zod does, and leaves the 1,001st package and JSON quirks to zod', () => {
    const ref = { name: 'com.example.app', versionCode: 3, signature: 'AB'.repeat(32) };
    expect(fastCheckBody({ packages: [ref] })).toEqual([{ ...ref, signature: 'ab'.repeat(32) }]);
    expect(fastCheckBody({ packages: Array.from({ length: 1001 }, () => ref) })).toBeNull();
    expect(fastCheckBody({ packages: [] })).toBeNull();
    expect(fastCheckBody(JSON.parse(`{"packages":[${JSON.stringify(ref)}],"__proto__":{}}`))).toBeNull();
    expect(fastCheckBody([ref])).toBeNull();
  });
});

describe('parseCheckBody', () => {
  it('throws zod’s validation error, every bad field listed, for what the fast path declines', () => {
    let caught: unknown;
    try {
      parseCheckBody({ packages: [{ name: 'x', versionCode: -1, signature: 'z' }] });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ValidationError);
    expect((caught as ValidationError).details.map((d) => d.path).sort()).toEqual([
      'packages[0].name',
      'packages[0].signature',
      'packages[0].versionCode',
    ]);
  });
});
