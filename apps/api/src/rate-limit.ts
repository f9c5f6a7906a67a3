import { createHash } from 'node:crypto';
import type { RequestHandler } from 'express';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import type { RedisClient } from '@safepkg/core';
import { RateLimitedError, sendError } from './http-errors';

export interface RateLimitOptions {
  redis: RedisClient;
  keyPrefix: string;
  /** Per API key, and per IP for requests without a key. */
  points: number;
  /** Per IP for requests with an API key, whichever key; 0 = no per-IP cap on keyed requests. */
  ipPoints: number;
  windowS: number;
}

/** A limiter shared by every pod through Redis, with an in-process stand-in of the same size while Redis is down. */
function sharedLimiter(
  redis: RedisClient,
  keyPrefix: string,
  points: number,
  windowS: number,
): RateLimiterRedis {
  return new RateLimiterRedis({
    storeClient: redis,
    keyPrefix,
    points,
    duration: windowS,
    rejectIfRedisNotReady: true,
    insuranceLimiter: new RateLimiterMemory({ points, duration: windowS }),
  });
}

/**
 * Per-client rate limit shared by every pod through Redis. A request with an API key
 * (`X-Api-Key`, hashed so keys never reach Redis) spends its key's budget AND its IP's budget
 * for keyed traffic: a client rotating keys gets a fresh key bucket each time, so only the IP
 * budget stops it. That budget is larger (RATE_LIMIT_IP_POINTS) because carrier NAT puts many
 * honest devices, each with its own key, behind one IP. A request without a key spends its IP's
 * budget (RATE_LIMIT_POINTS). While Redis is down an in-process limiter of the same size
 * stands in, so an outage neither fails requests nor lifts the limit. Returns null when
 * limiting is off (points = 0).
 */
export function rateLimit(options: RateLimitOptions): RequestHandler | null {
  if (options.points <= 0) return null;
  const { redis, keyPrefix, windowS } = options;
  // One store prefix; the id kinds (k:, ip:, kip:) keep the three budgets apart.
  const perClient = sharedLimiter(redis, keyPrefix, options.points, windowS);
  const perIpKeyed = options.ipPoints > 0 ? sharedLimiter(redis, keyPrefix, options.ipPoints, windowS) : null;

  const consume = async (apiKey: string | undefined, ip: string): Promise<void> => {
    if (!apiKey) {
      await perClient.consume(`ip:${ip}`);
      return;
    }
    // The key's own budget first: a client over it is refused without spending the budget it
    // shares with every other device behind its IP.
    await perClient.consume(`k:${createHash('sha256').update(apiKey).digest('hex').slice(0, 32)}`);
    await perIpKeyed?.consume(`kip:${ip}`);
  };

  return (req, res, next) => {
    consume(req.get('x-api-key'), req.ip ?? 'unknown').then(
      () => next(),
      (rejection: unknown) => {
        if (rejection instanceof RateLimiterRes) {
          res.setHeader('Retry-After', String(Math.max(1, Math.ceil(rejection.msBeforeNext / 1000))));
          sendError(res, new RateLimitedError('too many requests from this client; retry later'));
          return;
        }
        // Neither Redis nor the insurance limiter answered: serve rather than fail the device.
        req.log?.warn({ err: rejection }, 'rate limiter failed; request allowed');
        next();
      },
    );
  };
}
