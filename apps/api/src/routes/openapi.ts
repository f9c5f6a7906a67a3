import { Router } from 'express';
import { openApiDocument } from '../openapi';

export function openApiRouter(): Router {
  const router = Router();
  // Built once per app, not per request: the document is static for a build.
  const document = openApiDocument();
  router.get('/openapi.json', (_req, res) => {
    res.json(document);
  });
  return router;
}
