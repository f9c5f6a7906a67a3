import { Router, type RequestHandler } from 'express';
import { parseOrThrow, type DeadLetter, type RedisBuffer, type ReportBuffer } from '@safepkg/core';
import type { Redis, Cluster } from 'ioredis';
import { needDependency, throughRedis } from '../dependency-errors';
import { requireJson } from '../http-errors';
import { redriveBodySchema } from '../schemas';

export interface AdminDeps {
  buffer: RedisBuffer;
  /** Report deltas counted in Redis and not yet in PostgreSQL, per partition. */
  reports: ReportBuffer;
  redis: Redis | Cluster;
  flusherStatusKey: string;
  /** Schedules a flush tick now. */
  requestFlush: () => Promise<void>;
}

/**
 * A redrive of everything has no body. curl sends none, but most HTTP clients (fetch, axios)
 * send `Content-Length: 0` and no Content-Type on a body-less POST: that is "no body", not a
 * body of the wrong type, so it must not be refused with 415.
 */
const jsonOrEmpty: RequestHandler = (req, res, next) => {
  if (req.headers['content-length'] === '0') {
    next();
    return;
  }
  requireJson(req, res, next);
};

/** Operator routes; mounted behind adminAuth. */
export function adminRouter(deps: AdminDeps): Router {
  const router = Router();
  const { buffer } = deps;

  const allPartitions = async () => {
    const configured = Array.from({ length: buffer.partitions }, (_, p) => p);
    return [
      ...configured,
      ...(await needDependency('could not list buffer partitions', buffer.strayPartitions())),
    ];
  };

  router.get('/v1/admin/buffer', async (_req, res) => {
    const partitions = await allPartitions();
    const [stats, reportStats, lastFlush] = await needDependency(
      'could not read buffer stats',
      Promise.all([
        buffer.stats(partitions),
        deps.reports.stats(partitions),
        deps.redis.get(deps.flusherStatusKey),
      ]),
    );
    const maxAge = (ages: (number | null)[]) =>
      ages.reduce<number | null>((a, age) => (age === null ? a : Math.max(a ?? 0, age)), null);
    res.json({
      partitions: stats.map((s, i) => ({
        ...s,
        reportDeltas: reportStats[i]?.buffered ?? 0,
        oldestReportDeltaAgeMs: reportStats[i]?.oldestAgeMs ?? null,
      })),
      depth: stats.reduce((a, s) => a + s.depth, 0),
      deadLetters: stats.reduce((a, s) => a + s.deadLetters, 0),
      oldestPendingAgeMs: maxAge(stats.map((s) => s.oldestPendingAgeMs)),
      reportDeltas: reportStats.reduce((a, r) => a + r.buffered, 0),
      oldestReportDeltaAgeMs: maxAge(reportStats.map((r) => r.oldestAgeMs)),
      lastFlush: lastFlush ? (JSON.parse(lastFlush) as unknown) : null,
    });
  });

  router.post('/v1/admin/flush', async (_req, res) => {
    await throughRedis('could not schedule a flush', deps.redis, deps.requestFlush);
    res.status(202).json({ scheduled: true });
  });

  const present = (d: DeadLetter) => ({
    key: d.key,
    partition: d.partition,
    firstSeenAt: new Date(d.payload.t).toISOString(),
    error: d.error,
    deadAt: new Date(d.deadAt).toISOString(),
  });

  router.get('/v1/admin/dead-letters', async (_req, res) => {
    const letters = await needDependency(
      'could not list dead letters',
      buffer.deadLetters(await allPartitions()),
    );
    res.json({ deadLetters: letters.map(present) });
  });

  router.post('/v1/admin/dead-letters/redrive', jsonOrEmpty, async (req, res) => {
    const { keys } = parseOrThrow(redriveBodySchema, req.body ?? {});
    let letters = await needDependency(
      'could not list dead letters',
      buffer.deadLetters(await allPartitions(), Number.MAX_SAFE_INTEGER),
    );
    if (keys) {
      const wanted = new Set(keys);
      letters = letters.filter((l) => wanted.has(l.key));
    }
    const redriven = await needDependency('could not redrive dead letters', buffer.redrive(letters));
    // Retry them now rather than at the next scheduled tick: the operator is watching for the outcome.
    if (redriven > 0)
      await throughRedis('redriven, but could not schedule a flush', deps.redis, deps.requestFlush);
    res.json({ redriven });
  });

  return router;
}
