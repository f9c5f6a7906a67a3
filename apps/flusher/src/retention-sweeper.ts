import { randomBytes } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import type { Pool } from 'pg';
import {
  heldInRedis,
  isCluster,
  RetentionStore,
  runScript,
  SWEEP_TIMEOUT_CODES,
  type Config,
  type KeySchema,
  type Logger,
  type RedisBuffer,
  type RedisClient,
  type RetentionCursor,
} from '@safepkg/core';
import type { Checkpoint } from './crash-points';
import type { FlusherMetrics } from './metrics';

export interface SweepResult {
  skipped: 'disabled' | 'busy' | 'stopping' | null;
  batches: number;
  deleted: number;
  held: number;
  /** Swept packages a check counted between the batch's Redis check and its COMMIT: buffered again. */
  rebuffered: number;
  /** True when the pass reached the cut-off (the next sweep starts from the top of the index). */
  passComplete: boolean;
  /** Pauses (RETENTION_BATCH_PAUSE_MS) waited between batches, including one cut short by stop(). */
  pauses: number;
  error: string | null;
}

/** Waits `ms`, or less if `signal` aborts (resolving, not rejecting, then). */
export type Sleep = (ms: number, signal: AbortSignal) => Promise<void>;

const sleepUnlessAborted: Sleep = (ms, signal) =>
  delay(ms, undefined, { signal }).catch((err: unknown) => {
    if (!signal.aborted) throw err;
  });

export interface RetentionSweeperDeps {
  config: Config;
  pool: Pool;
  redis: RedisClient;
  keys: KeySchema;
  buffer: RedisBuffer;
  metrics: FlusherMetrics;
  logger: Logger;
  /** Test-only: runs after the batch's Redis question, before its DELETE and COMMIT. */
  afterHeldCheck?: (packageKeys: readonly string[]) => Promise<void>;
  /** Fault-test crash points (retention-before-commit, retention-batch-deleted). */
  checkpoint?: Checkpoint;
  /** The pause between batches; tests inject one to see the pauses without timing them. */
  sleep?: Sleep;
}

const DAY_MS = 86_400_000;

function isTimeout(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && SWEEP_TIMEOUT_CODES.has(code);
}

/**
 * The retention sweep (RETENTION_DAYS): deletes packages with no verdict that no device has
 * reported for the retention period, a batch (one short transaction) at a time, until the pass
 * reaches the cut-off. One sweeper at a time across flusher replicas: a Redis lease (SET NX PX,
 * compare-on-token renew/release, the flush lease's scripts) renewed between batches; a sweep
 * that loses it stops before its next batch. The pass's cursor is kept in Redis, so a sweep cut
 * short resumes where it stopped, whichever replica runs the next one.
 *
 * Its own timer rather than a job on the flush queue: a sweep of a million rows takes minutes,
 * and the flush worker runs one job at a time; and the lease, not a queue, is what keeps two
 * replicas from sweeping at once.
 *
 * Between two batches it pauses RETENTION_BATCH_PAUSE_MS: back to back, the batches took a
 * whole PostgreSQL core and the lookup p99 rose 1.46× (README Retention). The pause holds no
 * connection and no transaction (each batch's ends before it), renews the lease often enough
 * that it cannot expire however long the pause, and stop() cuts it short.
 */
export class RetentionSweeper {
  private readonly store: RetentionStore;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<SweepResult> | null = null;
  private stopping = false;
  /** Aborted by stop(): ends a pause at once instead of delaying shutdown by it. */
  private readonly stopped = new AbortController();
  private readonly sleep: Sleep;

  constructor(private readonly deps: RetentionSweeperDeps) {
    this.store = new RetentionStore(deps.pool, {
      lockTimeoutMs: deps.config.retentionLockTimeoutMs,
      statementTimeoutMs: deps.config.retentionStatementTimeoutMs,
    });
    this.sleep = deps.sleep ?? sleepUnlessAborted;
  }

  /** Sweeps every RETENTION_SWEEP_INTERVAL_MS (a sweep still running is not started twice). */
  start(): void {
    if (this.deps.config.retentionDays === null) return;
    this.timer = setInterval(() => {
      if (!this.running) void this.sweep();
    }, this.deps.config.retentionSweepIntervalMs);
  }

  /** Stops the timer, ends a pause at once, and lets the current batch finish. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.stopped.abort();
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running?.catch(() => undefined);
  }

  sweep(now = Date.now()): Promise<SweepResult> {
    if (this.running) return this.running;
    this.running = this.run(now).finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async run(now: number): Promise<SweepResult> {
    const { config, redis, keys, metrics, logger } = this.deps;
    const result: SweepResult = {
      skipped: null,
      batches: 0,
      deleted: 0,
      held: 0,
      rebuffered: 0,
      passComplete: false,
      pauses: 0,
      error: null,
    };
    if (config.retentionDays === null) return { ...result, skipped: 'disabled' };
    if (this.stopping) return { ...result, skipped: 'stopping' };
    const threshold = new Date(now - config.retentionDays * DAY_MS);
    const lockKey = keys.retentionLock();
    const token = randomBytes(16).toString('hex');
    let acquired = false;
    const end = metrics.retentionSweepDuration.startTimer();
    try {
      acquired = (await redis.set(lockKey, token, 'PX', config.lockTtlMs, 'NX')) === 'OK';
      if (!acquired) return { ...result, skipped: 'busy' };
      let cursor = await this.readCursor();
      const checkpoint = this.deps.checkpoint;
      for (;;) {
        if (this.stopping) break;
        const batch = await this.store.sweepBatch({
          threshold,
          after: cursor,
          limit: config.retentionBatchSize,
          held: async (packageKeys) => {
            const held = await heldInRedis(redis, keys, config.bufferPartitions, packageKeys);
            await this.deps.afterHeldCheck?.(packageKeys);
            return held;
          },
          beforeCommit: checkpoint && (() => checkpoint('retention-before-commit')),
        });
        if (batch.deleted.length > 0) await checkpoint?.('retention-batch-deleted');
        result.batches++;
        result.deleted += batch.deleted.length;
        result.held += batch.held;
        metrics.retentionSwept.inc(batch.deleted.length);
        metrics.retentionHeld.inc(batch.held);
        if (batch.deleted.length > 0) result.rebuffered += await this.afterCommit(batch.deleted, now);
        cursor = batch.cursor;
        await this.writeCursor(cursor);
        if (!cursor) {
          result.passComplete = true;
          break;
        }
        if (!(await this.renew(lockKey, token)) || !(await this.pause(lockKey, token, result))) {
          acquired = false;
          logger.warn('retention lease lost; another flusher continues the pass');
          break;
        }
      }
      metrics.retentionLastSweep.set(Date.now() / 1000);
      if (result.deleted > 0 || result.passComplete)
        logger.info(
          {
            batches: result.batches,
            deleted: result.deleted,
            held: result.held,
            rebuffered: result.rebuffered,
            passComplete: result.passComplete,
            pauseMs: config.retentionBatchPauseMs,
            threshold: threshold.toISOString(),
          },
          'retention sweep',
        );
    } catch (err) {
      result.error = err instanceof Error ? err.message : String(err);
      metrics.retentionFailures.inc({ reason: isTimeout(err) ? 'timeout' : 'unavailable' });
      // A timed-out batch rolled back whole; the pass resumes from the last committed batch's cursor.
      logger.warn({ err, batches: result.batches }, 'retention sweep stopped; the next one resumes the pass');
    } finally {
      end();
      if (acquired) await runScript(redis, 'lease-release', [lockKey], [token]).catch(() => undefined);
    }
    return result;
  }

  private async renew(lockKey: string, token: string): Promise<boolean> {
    const { redis, config } = this.deps;
    return (await runScript(redis, 'lease-renew', [lockKey], [token, config.lockTtlMs])) === 1;
  }

  /**
   * The pause between two batches: RETENTION_BATCH_PAUSE_MS in steps of at most LOCK_TTL_MS/3
   * with a lease renewal after each, so the lease cannot expire however long the pause is, and
   * the last renewal gives the next batch a full TTL. False if the lease was lost meanwhile.
   * Nothing of PostgreSQL is held here: the batch's transaction ended and its client went back
   * to the pool before this is called.
   */
  private async pause(lockKey: string, token: string, result: SweepResult): Promise<boolean> {
    const { config } = this.deps;
    const step = Math.max(1, Math.floor(config.lockTtlMs / 3));
    let left = config.retentionBatchPauseMs;
    if (left > 0) result.pauses++;
    while (left > 0 && !this.stopping) {
      const ms = Math.min(left, step);
      await this.sleep(ms, this.stopped.signal);
      left -= ms;
      // A stop during the pause ends the sweep here; the release in run()'s finally follows.
      if (this.stopping) break;
      if (!(await this.renew(lockKey, token))) return false;
    }
    return true;
  }

  /**
   * After COMMIT: drops the swept packages' cache entries (a swept package must not be answered
   * "known" from the cache), then asks Redis once more. A check that read the row (or its cache
   * entry) before the COMMIT and counted it after the batch's first question left deltas that no
   * row will take; buffering the package again makes the flusher insert it as new before it
   * applies them (unless that flush took its delta set before this re-buffer: README Retention).
   */
  private async afterCommit(swept: readonly string[], now: number): Promise<number> {
    const { redis, keys, config, buffer, logger } = this.deps;
    const cacheKeys = swept.map((k) => keys.cache(k));
    // UNLINK spans slots, which a cluster refuses: there, one per key, pipelined.
    if (isCluster(redis)) await Promise.all(cacheKeys.map((k) => redis.unlink(k)));
    else await redis.unlink(...cacheKeys);
    const late = [...(await heldInRedis(redis, keys, config.bufferPartitions, swept))];
    if (late.length === 0) return 0;
    try {
      await buffer.add(late.map((key) => ({ key, payload: { t: now } })));
    } catch (err) {
      logger.warn({ err, packages: late.length }, 'could not re-buffer swept packages reported meanwhile');
      return 0;
    }
    this.deps.metrics.retentionRebuffered.inc(late.length);
    return late.length;
  }

  private async readCursor(): Promise<RetentionCursor | null> {
    const raw = await this.deps.redis.get(this.deps.keys.retentionCursor());
    if (raw === null) return null;
    try {
      const c = JSON.parse(raw) as Partial<RetentionCursor>;
      if (typeof c.firstSeenAt === 'string' && typeof c.id === 'string' && /^\d+$/.test(c.id))
        return { firstSeenAt: c.firstSeenAt, id: c.id };
    } catch {
      // falls through: a damaged cursor restarts the pass, which only costs a re-read
    }
    return null;
  }

  private async writeCursor(cursor: RetentionCursor | null): Promise<void> {
    const key = this.deps.keys.retentionCursor();
    if (cursor) await this.deps.redis.set(key, JSON.stringify(cursor));
    else await this.deps.redis.del(key);
  }
}
