import { createHash } from 'node:crypto';
import type { RequestHandler } from 'express';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import type { RedisClient } from '@safepkg/core';
import { sendError } from './http-errors';

export interface RateLimitOptions {
  redis: RedisClient;
  keyPrefix: string;
  points: number;
  windowS: number;
}

/**
 * Per-client rate limit shared by every pod through Redis. A client is its API key
 * (`X-Api-Key`, hashed so keys never reach Redis) if it sends one, else its IP. While
 * Redis is down an in-process limiter of the same size stands in, so an outage neither
 * fails requests nor lifts the limit. Returns null when limiting is off (points = 0).
 */
export function rateLimit(options: RateLimitOptions): RequestHandler | null {
  if (options.points <= 0) return null;
  const limiter = new RateLimiterRedis({
    storeClient: options.redis,
    keyPrefix: options.keyPrefix,
    points: options.points,
    duration: options.windowS,
    rejectIfRedisNotReady: true,
    insuranceLimiter: new RateLimiterMemory({ points: options.points, duration: options.windowS }),
  });
  return (req, res, next) => {
    const apiKey = req.get('x-api-key');
    const client = apiKey ? `k:${createHash('sha256').update(apiKey).digest('hex').slice(0, 32)}` : `ip:${req.ip ?? 'unknown'}`;
    limiter.consume(client).then(
      () => next(),
      (rejection: unknown) => {
        if (rejection instanceof RateLimiterRes) {
          res.setHeader('Retry-After', String(Math.max(1, Math.ceil(rejection.msBeforeNext / 1000))));
          sendError(res, 429, 'rate_limited', 'too many requests from this client; retry later');
          return;
        }
        // Neither Redis nor the insurance limiter answered: serve rather than fail the device.
        req.log?.warn({ err: rejection }, 'rate limiter failed; request allowed');
        next();
      },
    );
  };
}
