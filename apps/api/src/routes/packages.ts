import { Router } from 'express';
import { parseOrThrow } from '@safepkg/core';
import { parseCheckBody } from '../check-body';
import type { CheckService } from '../check-service';
import { NotFoundError, requireJson, sendError } from '../http-errors';
import { packageParamsSchema } from '../schemas';

export function packagesRouter(checks: CheckService): Router {
  const router = Router();

  router.post('/v1/packages/check', requireJson, async (req, res) => {
    const packages = parseCheckBody(req.body);
    res.json(await checks.check(packages));
  });

  router.get('/v1/packages/:name/:versionCode/:signature', async (req, res) => {
    const ref = parseOrThrow(packageParamsSchema, { ...req.params });
    const found = await checks.get(ref);
    if (!found) return sendError(res, new NotFoundError('package was never seen'));
    res.json({ ...found.result, degraded: found.degraded });
  });

  return router;
}
