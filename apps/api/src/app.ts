import { randomUUID } from 'node:crypto';
import express, { type Express } from 'express';
import helmet from 'helmet';
import { pinoHttp } from 'pino-http';
import type { Pool } from 'pg';
import {
  KeySchema,
  PackageStore,
  pendingAnswerWindowMs,
  RedisBuffer,
  ReportBuffer,
  isCluster,
  ReportCoalescer,
  ResultCache,
  VerdictFeed,
  VerdictLsn,
  type Config,
  type Logger,
  type ReadPool,
  type RedisClient,
} from '@safepkg/core';
import { adminAuth } from './admin-auth';
import { AnswerTtl } from './answer-ttl';
import { CheckService, type CheckHooks } from './check-service';
import { compressAnswers } from './compression';
import { EvaluationService } from './evaluation-service';
import { errorHandler, notFound } from './http-errors';
import { SignerEvaluationService } from './signer-evaluation-service';
import { ApiMetrics } from './metrics';
import { adminRouter } from './routes/admin';
import { adminPackagesRouter } from './routes/admin-packages';
import { evaluationsRouter } from './routes/evaluations';
import { healthRouter } from './routes/health';
import { openApiRouter } from './routes/openapi';
import { packagesRouter } from './routes/packages';
import { verdictChangesRouter } from './routes/verdict-changes';
import { rateLimit } from './rate-limit';

export interface AppDeps {
  config: Config;
  pool: Pool;
  redis: RedisClient;
  logger: Logger;
  metrics?: ApiMetrics;
  requestFlush?: () => Promise<void>;
  /** Routes lookups to replicas (DATABASE_READ_URL); started and stopped by the caller. */
  reads?: ReadPool;
  /** Benchmark-only: false measures the check path without counting reports (SAFEPKG_TEST_NO_REPORTS=1). */
  countReports?: boolean;
  /** Test-only pauses inside the check path, to force interleavings deterministically. */
  checkHooks?: CheckHooks;
}

const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * Report counts group-committed on a single Redis, where one batch is one atomic script call: a
 * failed write counted none of its checks. On a Redis Cluster a write is one call per partition
 * on several masters, so one failing call would answer 503 to checks whose counts other calls
 * wrote (and their retries would count again): there each check is written alone, as it came.
 */
function reportWriter(redis: RedisClient, reports: ReportBuffer): Pick<ReportCoalescer, 'add'> {
  return isCluster(redis) ? reports : new ReportCoalescer(reports);
}

/** Builds the Express app from its dependencies; no I/O, no listening. */
export function createApp(deps: AppDeps): Express {
  const { config, pool, redis, logger } = deps;
  const metrics = deps.metrics ?? new ApiMetrics();
  const keys = new KeySchema(config.keyPrefix);
  const buffer = new RedisBuffer(redis, keys, config.bufferPartitions, config.maxBufferDepth);
  const cache = new ResultCache(redis, keys, config.cacheTtlS);
  const reports = new ReportBuffer(redis, keys, config.bufferPartitions);
  const checks = new CheckService({
    cache,
    store: new PackageStore(pool),
    reads: deps.reads,
    buffer,
    reports: deps.countReports === false ? null : reportWriter(redis, reports),
    readCounting:
      deps.countReports === false || isCluster(redis) || config.writeMode === 'direct'
        ? null
        : { targetOf: (k) => reports.countTarget(k), ready: () => redis.status === 'ready' },
    writeMode: config.writeMode,
    pendingAnswerWindowMs: pendingAnswerWindowMs(config),
    metrics,
    logger,
    hooks: deps.checkHooks,
  });

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', 'simple');
  app.set('trust proxy', config.trustProxyHops);
  // An API answering JSON only: no CSP exceptions needed, every helmet default applies.
  app.use(helmet());

  app.use(
    pinoHttp({
      logger,
      genReqId: (req, res) => {
        const given = req.headers['x-request-id'];
        const id = typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
        res.setHeader('X-Request-Id', id);
        return id;
      },
      customLogLevel: (_req, res, err) =>
        err || res.statusCode >= 500 ? 'error' : res.statusCode >= 400 ? 'warn' : 'info',
      autoLogging: {
        ignore: (req) => req.url === '/healthz' || req.url === '/readyz' || req.url === '/metrics',
      },
    }),
  );
  app.use((req, res, next) => {
    const end = metrics.httpDuration.startTimer({ method: req.method });
    res.on('finish', () => {
      const route = req.route ? `${req.baseUrl}${String(req.route.path)}` : 'unmatched';
      end({ route, code: String(res.statusCode) });
    });
    next();
  });
  // Before every router: each JSON answer, errors and this API's document included, is
  // compressed when it pays and the client accepts it.
  app.use(compressAnswers(config.compressMinBytes, metrics));
  // Probes, metrics and this document take no body: mounted before the JSON parser, a GET that
  // carries a malformed or oversized body is still answered instead of refused with 400 or 413.
  app.use(healthRouter({ pool, redis, registry: metrics.registry }));
  app.use(openApiRouter());
  // A gzip, deflate or br request body is inflated here, and the 1 MB limit applies to the
  // inflated bytes as they stream (a zip bomb is refused 413 once 1 MB has come out of it).
  app.use(express.json({ limit: '1mb', strict: true, type: 'application/json' }));
  const limiter = rateLimit({
    redis,
    keyPrefix: keys.rateLimitPrefix(),
    points: config.rateLimitPoints,
    ipPoints: config.rateLimitIpPoints,
    windowS: config.rateLimitWindowS,
  });
  if (limiter) app.use('/v1', limiter);
  app.use(packagesRouter(checks, new AnswerTtl(config)));
  app.use('/v1/admin', adminAuth(config.adminToken));
  const verdictLsn = new VerdictLsn(redis, keys);
  app.use(
    evaluationsRouter(
      new EvaluationService(pool, cache, logger, verdictLsn),
      new SignerEvaluationService(pool, cache, logger, verdictLsn),
      config.analysisClaimTtlMs,
    ),
  );
  app.use(
    adminRouter({
      buffer,
      reports,
      redis,
      flusherStatusKey: keys.flusherStatus(),
      requestFlush: deps.requestFlush ?? (() => Promise.resolve()),
    }),
  );
  app.use(adminPackagesRouter({ pool, buffer, reports }));
  // From the primary: the feed must hold a change as soon as its evaluation was acknowledged.
  app.use(verdictChangesRouter(new VerdictFeed(pool)));
  app.use(notFound);
  app.use(errorHandler(config.retryAfterS));
  return app;
}
