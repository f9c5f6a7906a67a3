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
  // The policies a request is under never change between requests, so each header is built once.
  const policy = (name: PolicyName, quota: number) => `"${name}";q=${quota};w=${windowS}`;
  const anonymousPolicy = policy('ip', options.points);
  const keyedPolicy = [
    policy('key', options.points),
    ...(perIpKeyed ? [policy('keyed-ip', options.ipPoints)] : []),
  ].join(', ');

  /** Each budget spent, with what is left of it, in the order spent; throws at the first refused. */
  const consume = async (apiKey: string | undefined, ip: string, spent: Spent[]): Promise<void> => {
    if (!apiKey) {
      spent.push(['ip', await perClient.consume(`ip:${ip}`)]);
      return;
    }
    // The key's own budget first: a client over it is refused without spending the budget it
    // shares with every other device behind its IP.
    spent.push([
      'key',
      await perClient.consume(`k:${createHash('sha256').update(apiKey).digest('hex').slice(0, 32)}`),
    ]);
    if (perIpKeyed) spent.push(['keyed-ip', await perIpKeyed.consume(`kip:${ip}`)]);
  };

  return (req, res, next) => {
    const apiKey = req.get('x-api-key');
    const spent: Spent[] = [];
    res.setHeader('RateLimit-Policy', apiKey ? keyedPolicy : anonymousPolicy);
    consume(apiKey, req.ip ?? 'unknown', spent).then(
      () => {
        res.setHeader('RateLimit', rateLimitField(spent));
        next();
      },
      (rejection: unknown) => {
        if (rejection instanceof RateLimiterRes) {
          const refused: Spent = [apiKey ? (spent.length === 0 ? 'key' : 'keyed-ip') : 'ip', rejection];
          res.setHeader('RateLimit', rateLimitField([...spent, refused]));
          res.setHeader('Retry-After', String(secondsUntil(rejection)));
          sendError(res, new RateLimitedError('too many requests from this client; retry later'));
          return;
        }
        // Neither Redis nor the insurance limiter answered: serve rather than fail the device,
        // and claim no remaining quota that nobody counted.
        res.removeHeader('RateLimit-Policy');
        req.log?.warn({ err: rejection }, 'rate limiter failed; request allowed');
        next();
      },
    );
  };
}

/**
 * The budgets, as named in the RateLimit-Policy / RateLimit fields: `ip` for requests without
 * an API key, `key` for the key's own budget and `keyed-ip` for the IP's budget of keyed traffic.
 */
type PolicyName = 'ip' | 'key' | 'keyed-ip';
type Spent = [PolicyName, RateLimiterRes];

function secondsUntil(res: RateLimiterRes): number {
  return Math.max(1, Math.ceil(res.msBeforeNext / 1000));
}

/**
 * The RateLimit field of draft-ietf-httpapi-ratelimit-headers-10 (a Structured Fields List):
 * one item per budget, `r` the quota units left and `t` the seconds until the window resets.
 */
function rateLimitField(spent: readonly Spent[]): string {
  return spent
    .map(([name, r]) => `"${name}";r=${Math.max(0, r.remainingPoints)};t=${secondsUntil(r)}`)
    .join(', ');
}
