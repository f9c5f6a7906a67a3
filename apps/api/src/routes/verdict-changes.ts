import { Router } from 'express';
import { CursorExpiredError, parseFeedQuery, type VerdictFeed } from '@safepkg/core';
import { needDependency } from '../dependency-errors';

/**
 * The verdict change feed for a push service (issue 15): every change of an answered status, in
 * commit order, paged by an opaque cursor. Mounted behind adminAuth.
 */
export function verdictChangesRouter(feed: VerdictFeed): Router {
  const router = Router();

  router.get('/v1/admin/verdict-changes', async (req, res) => {
    const { after, limit } = parseFeedQuery(req.query as Record<string, unknown>);
    let page;
    try {
      page = await needDependency('could not read the verdict changes', feed.read(after, limit));
    } catch (err) {
      // 410, not a silent restart from the oldest row: the follower has missed changes and must
      // resynchronise (re-check what its devices hold) before following from `oldest`.
      if (err instanceof CursorExpiredError) {
        res.status(410).json({
          error: { code: err.code, message: err.message, details: [{ path: 'after', message: 'expired' }] },
          oldest: err.oldest,
        });
        return;
      }
      throw err;
    }
    res.json({
      changes: page.changes.map((c) => ({
        kind: c.kind,
        name: c.name,
        versionCode: c.versionCode,
        signature: c.signature,
        status: c.status,
        source: c.source,
        basis: c.basis,
        threatIndex: c.threatIndex,
        changedAt: c.changedAt.toISOString(),
      })),
      next: page.next,
    });
  });

  return router;
}
