import { Router } from 'express';
import {
  PackageStore,
  packageDetail,
  packageKey,
  parseOrThrow,
  signerStatusOf,
  type RedisBuffer,
  type ReportBuffer,
} from '@safepkg/core';
import type { Pool } from 'pg';
import { withSigner, type PackageResult } from '../check-service';
import { needDependency } from '../dependency-errors';
import { NotFoundError, sendError } from '../http-errors';
import { packageParamsSchema } from '../schemas';

export interface AdminPackagesDeps {
  pool: Pool;
  buffer: RedisBuffer;
  reports: ReportBuffer;
}

/**
 * The analyst's view of one package: what PostgreSQL holds plus what is still buffered (reports
 * counted but not flushed, a pending entry), its signer's verdict, and the answer a check gives. Both are needed for an exact answer, so either one
 * not answering is `503 unavailable`, never a partial count.
 */
export function adminPackagesRouter(deps: AdminPackagesDeps): Router {
  const router = Router();
  const store = new PackageStore(deps.pool);

  router.get('/v1/admin/packages/:name/:versionCode/:signature', async (req, res) => {
    const ref = parseOrThrow(packageParamsSchema, { ...req.params });
    const key = packageKey(ref);
    const [stored, signers, buffered, [pending]] = await Promise.all([
      needDependency('could not read the package', packageDetail(deps.pool, ref)),
      needDependency('could not read the signer', store.lookupSigners([ref.signature])),
      needDependency('could not read buffered reports', deps.reports.pendingFor(key)),
      needDependency('could not read the buffer', deps.buffer.isPending([key])),
    ]);
    if (!stored && !pending && buffered.count === 0)
      return sendError(res, new NotFoundError('package was never seen'));
    const storedLast = stored?.lastSeenAt?.getTime() ?? null;
    const last =
      storedLast === null ? buffered.lastSeenAt : Math.max(storedLast, buffered.lastSeenAt ?? storedLast);
    const signer = signers.get(ref.signature);
    // What a check answers for it now: its own verdict combined with its signer's, by the check
    // path's precedence (the same function), so the analyst sees what devices see.
    const own: PackageResult = {
      ...ref,
      status: stored?.verdict ?? 'unknown',
      threatIndex: stored?.threatIndex ?? null,
      source: stored?.source ?? null,
      basis: stored?.verdict ? 'package' : null,
      known: stored !== null,
      pending: pending === true,
      firstSeenAt: null,
    };
    const answer = withSigner(own, signerStatusOf(signer));
    res.json({
      name: ref.name,
      versionCode: ref.versionCode,
      signature: ref.signature,
      known: stored !== null,
      pending: pending === true,
      firstSeenAt: stored ? stored.firstSeenAt.toISOString() : null,
      lastSeenAt: last === null ? null : new Date(last).toISOString(),
      reports: (stored?.reports ?? 0) + buffered.count,
      reportsBuffered: buffered.count,
      status: stored?.verdict ?? 'unknown',
      threatIndex: stored?.threatIndex ?? null,
      source: stored?.source ?? null,
      evaluations: (stored?.evaluations ?? []).map((e) => ({
        verdict: e.verdict,
        source: e.source,
        threatIndex: e.threatIndex,
        createdAt: e.createdAt.toISOString(),
        createdBy: e.createdBy,
      })),
      evaluationsTotal: stored?.evaluationsTotal ?? 0,
      signer: signer
        ? {
            status: signer.verdict,
            threatIndex: signer.threatIndex,
            source: signer.source,
            rev: signer.rev,
          }
        : null,
      answer: {
        status: answer.status,
        threatIndex: answer.threatIndex,
        source: answer.source,
        basis: answer.basis,
      },
      analysis: stored?.analysis
        ? {
            queued: true,
            enqueuedAt: stored.analysis.enqueuedAt.toISOString(),
            claimedUntil: stored.analysis.claimedUntil?.toISOString() ?? null,
            attempts: stored.analysis.attempts,
          }
        : { queued: false, enqueuedAt: null, claimedUntil: null, attempts: null },
    });
  });

  return router;
}
