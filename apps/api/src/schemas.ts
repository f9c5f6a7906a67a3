import { z } from 'zod';
import {
  MAX_PACKAGES_PER_REQUEST,
  packageNameSchema,
  packageRefSchema,
  signatureSchema,
} from '@safepkg/core';

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
