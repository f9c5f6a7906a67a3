import { createHash, timingSafeEqual } from 'node:crypto';
import type { RequestHandler } from 'express';
import { NotFoundError, sendError, UnauthorizedError } from './http-errors';

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * Bearer-token guard. Both sides are hashed first so the comparison is constant-time
 * whatever the lengths. No token configured → the admin API is off (404), never open.
 */
export function adminAuth(token: string | null): RequestHandler {
  const expected = token === null ? null : digest(token);
  return (req, res, next) => {
    if (expected === null) {
      sendError(res, new NotFoundError('the admin API is disabled: ADMIN_TOKEN is not set'));
      return;
    }
    const m = /^Bearer (.+)$/.exec(req.get('authorization') ?? '');
    if (!m || !timingSafeEqual(digest(m[1] as string), expected)) {
      res.setHeader('WWW-Authenticate', 'Bearer');
      sendError(res, new UnauthorizedError('a valid admin bearer token is required'));
      return;
    }
    next();
  };
}
