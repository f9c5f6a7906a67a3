import { Router } from 'express';
import { parseOrThrow, ValidationError } from '@safepkg/core';
import type { EvaluationService } from '../evaluation-service';
import { requireJson } from '../http-errors';
import { actorSchema, claimBodySchema, evaluationsBodySchema } from '../schemas';

/** Analyst routes (verdicts in, packages to analyse out); mounted behind adminAuth. */
export function evaluationsRouter(evaluations: EvaluationService, claimTtlMs: number): Router {
  const router = Router();

  router.post('/v1/admin/evaluations', requireJson, async (req, res) => {
    const body = parseOrThrow(evaluationsBodySchema, req.body);
    const header = req.get('x-actor');
    let actor = 'admin';
    if (header !== undefined) {
      const parsed = actorSchema.safeParse(header);
      if (!parsed.success)
        throw new ValidationError([
          { path: 'X-Actor', message: parsed.error.issues[0]?.message ?? 'invalid' },
        ]);
      actor = parsed.data;
    }
    res.json({ accepted: await evaluations.record(body.evaluations, actor) });
  });

  router.post('/v1/admin/analysis/claim', requireJson, async (req, res) => {
    const { limit } = parseOrThrow(claimBodySchema, req.body);
    const claims = await evaluations.claim(limit, claimTtlMs);
    res.json({
      packages: claims.map((c) => ({
        name: c.name,
        versionCode: c.versionCode,
        signature: c.signature,
        firstSeenAt: c.firstSeenAt.toISOString(),
        reports: c.reports,
        lastSeenAt: c.lastSeenAt ? c.lastSeenAt.toISOString() : null,
        claimedUntil: c.claimedUntil.toISOString(),
        attempts: c.attempts,
      })),
    });
  });

  return router;
}
