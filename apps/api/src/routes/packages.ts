import { Router } from 'express';
import { parseOrThrow } from '@safepkg/core';
import type { AnswerTtl } from '../answer-ttl';
import { parseCheckBody } from '../check-body';
import type { CheckService } from '../check-service';
import { NotFoundError, requireJson, sendError } from '../http-errors';
import { packageParamsSchema } from '../schemas';

export function packagesRouter(checks: CheckService, ttl: AnswerTtl): Router {
  const router = Router();

  router.post('/v1/packages/check', requireJson, async (req, res) => {
    const packages = parseCheckBody(req.body);
    const { results, degraded } = await checks.check(packages);
    // Each result says how long it holds (cacheTtlS); the answer as a whole mixes lifetimes and
    // belongs to one device, so no HTTP cache keeps it.
    res.setHeader('Cache-Control', 'no-store');
    res.json({ results: ttl.stamp(results, degraded), degraded });
  });

  router.get('/v1/packages/:name/:versionCode/:signature', async (req, res) => {
    const ref = parseOrThrow(packageParamsSchema, { ...req.params });
    const found = await checks.get(ref);
    if (!found) {
      res.setHeader('Cache-Control', 'no-store');
      return sendError(res, new NotFoundError('package was never seen'));
    }
    const [result] = ttl.stamp([found.result], found.degraded);
    // One result: its lifetime is the answer's, so an HTTP cache on the device (OkHttp,
    // NSURLCache) honours it without reading the body; private keeps shared proxies out.
    res.setHeader('Cache-Control', `private, max-age=${result?.cacheTtlS ?? 0}`);
    res.json({ ...result, degraded: found.degraded });
  });

  return router;
}
