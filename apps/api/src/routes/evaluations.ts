import { Router } from 'express';
import { parseOrThrow } from '@safepkg/core';
import type { EvaluationService } from '../evaluation-service';
import { requireJson } from '../http-errors';
import type { SignerEvaluationService } from '../signer-evaluation-service';
import { claimBodySchema, evaluationsBodySchema, parseActor, signerEvaluationsBodySchema } from '../schemas';

/** Analyst routes (verdicts in, packages to analyse out); mounted behind adminAuth. */
export function evaluationsRouter(
  evaluations: EvaluationService,
  signerEvaluations: SignerEvaluationService,
  claimTtlMs: number,
): Router {
  const router = Router();

  router.post('/v1/admin/evaluations', requireJson, async (req, res) => {
    const body = parseOrThrow(evaluationsBodySchema, req.body);
    const actor = parseActor(req.get('x-actor'));
    res.json({ accepted: await evaluations.record(body.evaluations, actor) });
  });

  router.post('/v1/admin/signer-evaluations', requireJson, async (req, res) => {
    const body = parseOrThrow(signerEvaluationsBodySchema, req.body);
    const actor = parseActor(req.get('x-actor'));
    res.json({ accepted: await signerEvaluations.record(body.evaluations, actor) });
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
