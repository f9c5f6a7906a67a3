import { z } from 'zod';
import {
  ValidationError,
  MAX_PACKAGES_PER_REQUEST,
  packageNameSchema,
  packageRefSchema,
  signatureSchema,
} from '@safepkg/core';

/**
 * Smallest normal float4. threat_index is a PostgreSQL `real`, which refuses anything below
 * about 1.4e-45 as out of range (22003), and stores values below this one with lost precision.
 * Such a value is refused here rather than rounded to 0: 0 means "no threat" to every reader,
 * and silently turning an analyst's tiny positive score into it would change the verdict's meaning.
 */
export const MIN_NORMAL_FLOAT4 = 1.1754943508222875e-38;

export const checkBodySchema = z.strictObject({
  packages: z
    .array(packageRefSchema, { error: 'must be an array of packages' })
    .min(1, 'must hold at least 1 package')
    .max(MAX_PACKAGES_PER_REQUEST, `must hold at most ${MAX_PACKAGES_PER_REQUEST} packages`),
});

export const packageParamsSchema = z.strictObject({
  name: packageNameSchema,
  versionCode: z
    .string()
    .regex(/^\d{1,16}$/, 'must be a non-negative integer')
    .transform(Number)
    .pipe(z.number().max(Number.MAX_SAFE_INTEGER, 'must be <= 2^53-1')),
  signature: signatureSchema,
});

export const redriveBodySchema = z.strictObject({
  /** Only these package keys; all dead letters when omitted. */
  keys: z.array(z.string().max(400)).max(10000).optional(),
});

const verdictFields = {
  verdict: z.enum(['safe', 'malicious', 'suspicious']),
  source: z.enum(['manual', 'model']),
  threatIndex: z
    .number({ error: 'must be a number' })
    .min(0, 'must be >= 0')
    .max(1, 'must be <= 1')
    .refine(
      (v) => v === 0 || v >= MIN_NORMAL_FLOAT4,
      `must be 0 or >= ${MIN_NORMAL_FLOAT4} (PostgreSQL real)`,
    ),
};

export const evaluationsBodySchema = z.strictObject({
  evaluations: z
    .array(packageRefSchema.extend(verdictFields), { error: 'must be an array of evaluations' })
    .min(1, 'must hold at least 1 evaluation')
    .max(MAX_PACKAGES_PER_REQUEST, `must hold at most ${MAX_PACKAGES_PER_REQUEST} evaluations`),
});

/** Verdicts on signing certificates: the same fields, keyed by the signature alone. */
export const signerEvaluationsBodySchema = z.strictObject({
  evaluations: z
    .array(z.strictObject({ signature: signatureSchema, ...verdictFields }), {
      error: 'must be an array of signer evaluations',
    })
    .min(1, 'must hold at least 1 evaluation')
    .max(MAX_PACKAGES_PER_REQUEST, `must hold at most ${MAX_PACKAGES_PER_REQUEST} evaluations`),
});

export const claimBodySchema = z.strictObject({
  limit: z
    .number({ error: 'must be an integer' })
    .int('must be an integer')
    .min(1, 'must be >= 1')
    .max(1000, 'must be <= 1000'),
});

/** Who recorded an evaluation (optional header), kept in evaluations.created_by. */
export const actorSchema = z.string().regex(/^[A-Za-z0-9._@-]{1,64}$/, 'must be 1-64 of A-Z a-z 0-9 . _ @ -');

/** The X-Actor header of the evaluation routes: `admin` when absent, a 400 naming it when malformed. */
export function parseActor(header: string | undefined): string {
  if (header === undefined) return 'admin';
  const parsed = actorSchema.safeParse(header);
  if (!parsed.success)
    throw new ValidationError([{ path: 'X-Actor', message: parsed.error.issues[0]?.message ?? 'invalid' }]);
  return parsed.data;
}
