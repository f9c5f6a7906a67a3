import { Router } from 'express';
import { parseOrThrow, type DeadLetter, type RedisBuffer } from '@safepkg/core';
import type { Redis, Cluster } from 'ioredis';
import { requireJson } from '../http-errors';
import { redriveBodySchema } from '../schemas';

export interface AdminDeps {
  buffer: RedisBuffer;
  redis: Redis | Cluster;
  flusherStatusKey: string;
  /** Schedules a flush tick now. */
  requestFlush: () => Promise<void>;
}

/** Operator routes; mounted behind adminAuth. */
export function adminRouter(deps: AdminDeps): Router {
  const router = Router();
  const { buffer } = deps;

  const allPartitions = async () => {
    const configured = Array.from({ length: buffer.partitions }, (_, p) => p);
    return [...configured, ...(await buffer.strayPartitions())];
  };

  router.get('/v1/admin/buffer', async (_req, res) => {
    const stats = await buffer.stats(await allPartitions());
    const lastFlush = await deps.redis.get(deps.flusherStatusKey);
    res.json({
      partitions: stats,
      depth: stats.reduce((a, s) => a + s.depth, 0),
      deadLetters: stats.reduce((a, s) => a + s.deadLetters, 0),
      oldestPendingAgeMs: stats.reduce<number | null>(
        (a, s) => (s.oldestPendingAgeMs === null ? a : Math.max(a ?? 0, s.oldestPendingAgeMs)),
        null,
      ),
      lastFlush: lastFlush ? (JSON.parse(lastFlush) as unknown) : null,
    });
  });

  router.post('/v1/admin/flush', async (_req, res) => {
    await deps.requestFlush();
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
    const letters = await buffer.deadLetters(await allPartitions());
    res.json({ deadLetters: letters.map(present) });
  });

  router.post('/v1/admin/dead-letters/redrive', requireJson, async (req, res) => {
    const { keys } = parseOrThrow(redriveBodySchema, req.body ?? {});
    let letters = await buffer.deadLetters(await allPartitions(), Number.MAX_SAFE_INTEGER);
    if (keys) {
      const wanted = new Set(keys);
      letters = letters.filter((l) => wanted.has(l.key));
    }
    res.json({ redriven: await buffer.redrive(letters) });
  });

  return router;
}
