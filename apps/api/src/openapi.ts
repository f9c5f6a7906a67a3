import {
  componentSchemas,
  errorSchema,
  examplePackage,
  ref,
  type Json,
  type JsonObject,
} from './openapi-schemas';

const json = (schema: JsonObject, example?: JsonObject): JsonObject => ({
  'application/json': example ? { schema, examples: { example: { value: example } } } : { schema },
});

const header = (name: string): JsonObject => ({ $ref: `#/components/headers/${name}` });

/**
 * components.headers. `required: true` marks a header every such answer carries (the api suite
 * checks each real answer for it); the others appear when they apply.
 */
const headerComponents: JsonObject = {
  RetryAfter: {
    description: 'seconds to wait before retrying',
    required: true,
    schema: { type: 'integer', minimum: 1 },
  },
  RateLimitPolicy: {
    description:
      'The budgets this request is counted against (draft-ietf-httpapi-ratelimit-headers-10, a Structured Fields ' +
      'List): `"ip"` (RATE_LIMIT_POINTS per IP, requests without X-Api-Key), `"key"` (RATE_LIMIT_POINTS per ' +
      'X-Api-Key) and `"keyed-ip"` (RATE_LIMIT_IP_POINTS per IP for requests with a key); `q` the quota, `w` the ' +
      'window in seconds (RATE_LIMIT_WINDOW_S). On every /v1 answer while rate limiting is on (RATE_LIMIT_POINTS > 0).',
    schema: { type: 'string' },
    examples: {
      keyed: { value: '"key";q=600;w=60, "keyed-ip";q=6000;w=60' },
      anonymous: { value: '"ip";q=600;w=60' },
    },
  },
  RateLimit: {
    description:
      'What is left of each budget RateLimit-Policy names (draft-ietf-httpapi-ratelimit-headers-10): `r` the ' +
      'requests left, `t` the seconds until the window resets. A request refused by its key budget did not ' +
      'spend the IP one, so only `"key"` is listed then.',
    schema: { type: 'string' },
    examples: { keyed: { value: '"key";r=598;t=42, "keyed-ip";r=5990;t=42' } },
  },
  Vary: {
    description: 'every JSON answer depends on Accept-Encoding, compressed or not',
    required: true,
    schema: { type: 'string', examples: ['Accept-Encoding'] },
  },
  ContentEncoding: {
    description:
      "gzip or br when the client accepts it (Accept-Encoding, q-values honoured; on a tie the client's order, gzip for *) and the answer " +
      'is at least COMPRESS_MIN_BYTES (default 1024); absent otherwise',
    schema: { enum: ['gzip', 'br'] },
  },
  CacheControlCheck: {
    description:
      '`no-store`: the answer mixes results of different lifetimes; each result says its own (cacheTtlS)',
    required: true,
    schema: { const: 'no-store' },
  },
  CacheControlPackage: {
    description:
      "`private, max-age=` the result's cacheTtlS: an HTTP cache on the device may keep it that long",
    required: true,
    schema: { type: 'string', pattern: '^private, max-age=[0-9]+$' },
  },
};

const retryAfter: JsonObject = { 'Retry-After': header('RetryAfter') };
const rateLimitHeaders: JsonObject = {
  'RateLimit-Policy': header('RateLimitPolicy'),
  RateLimit: header('RateLimit'),
};
/** The headers of every /v1 JSON answer: encoding negotiation and, when limiting is on, the budgets. */
const answerHeaders: JsonObject = {
  Vary: header('Vary'),
  'Content-Encoding': header('ContentEncoding'),
  ...rateLimitHeaders,
};

const errorExample = (code: string, message: string, details: JsonObject[] = []): JsonObject => ({
  error: { code, message, details },
});

/** components.responses: every error the API answers, each with the envelope and its codes. */
const errorResponses: JsonObject = {
  BadRequest: {
    description:
      'invalid input: every bad field is listed in details, including a value PostgreSQL refuses ' +
      '(SQLSTATE class 22/23: retrying it cannot succeed); nothing was buffered or stored',
    content: json(
      errorSchema(['invalid_request']),
      errorExample('invalid_request', 'request is invalid', [
        { path: 'packages[0].signature', message: 'must be 64 hexadecimal characters (SHA-256)' },
      ]),
    ),
  },
  Unauthorized: {
    description: 'missing or wrong admin bearer token',
    headers: { 'WWW-Authenticate': { required: true, schema: { const: 'Bearer' } } },
    content: json(
      errorSchema(['unauthorized']),
      errorExample('unauthorized', 'a valid admin bearer token is required'),
    ),
  },
  NotFound: {
    description: 'no such package, no such route, or the admin API is disabled (ADMIN_TOKEN not set)',
    content: json(errorSchema(['not_found']), errorExample('not_found', 'package was never seen')),
  },
  PayloadTooLarge: {
    description: 'request body over 1 MB',
    content: json(
      errorSchema(['payload_too_large']),
      errorExample('payload_too_large', 'request body exceeds 1 MB'),
    ),
  },
  UnsupportedMediaType: {
    description:
      'unsupported_media_type: a body that is not application/json (UTF-8); unsupported_encoding: a ' +
      'Content-Encoding other than gzip, deflate, br or identity',
    content: json(
      errorSchema(['unsupported_media_type', 'unsupported_encoding']),
      errorExample('unsupported_media_type', 'Content-Type must be application/json'),
    ),
  },
  RateLimited: {
    description:
      'over a budget per RATE_LIMIT_WINDOW_S, counted across every pod: RATE_LIMIT_POINTS per X-Api-Key (or per IP without a key), ' +
      'and RATE_LIMIT_IP_POINTS per IP for all requests with a key, whichever keys they carry. RateLimit shows ' +
      'the budget that refused it at r=0',
    headers: {
      ...retryAfter,
      // Inline rather than $ref: a 429 always carries them, and a $ref takes no `required` beside it.
      'RateLimit-Policy': { ...(headerComponents.RateLimitPolicy as JsonObject), required: true },
      RateLimit: { ...(headerComponents.RateLimit as JsonObject), required: true },
    },
    content: json(
      errorSchema(['rate_limited']),
      errorExample('rate_limited', 'too many requests from this client; retry later'),
    ),
  },
  BufferFullOrUnavailable: {
    description:
      'buffer_full: a buffer partition is at its share of MAX_BUFFER_DEPTH (what was buffered before stays valid); ' +
      'unavailable: neither Redis nor PostgreSQL can take the request. A retry is idempotent.',
    headers: retryAfter,
    content: json(
      errorSchema(['buffer_full', 'unavailable']),
      errorExample('buffer_full', 'buffer partition(s) 3 are full; retry later'),
    ),
  },
  Unavailable: {
    description:
      'a dependency the request needs does not answer; retry later. For one package: the answer is unknown unless ' +
      'both PostgreSQL and Redis answered (a stored row, or a pending entry, is enough on its own)',
    headers: retryAfter,
    content: json(
      errorSchema(['unavailable']),
      errorExample('unavailable', 'neither Redis nor PostgreSQL is answering'),
    ),
  },
  Internal: {
    description: 'an unexpected failure; the body never carries internals',
    content: json(errorSchema(['internal']), errorExample('internal', 'internal error')),
  },
};

const use = (name: string): JsonObject => ({ $ref: `#/components/responses/${name}` });

/** Responses every /v1 operation can give besides its own (the rate limiter and the error handler). */
const v1Common: JsonObject = { '429': use('RateLimited'), '500': use('Internal') };
/** express.json reads any JSON body before routing: malformed → 400, over 1 MB → 413. */
const bodyErrors: JsonObject = { '400': use('BadRequest'), '413': use('PayloadTooLarge') };
const jsonOnly: JsonObject = { ...bodyErrors, '415': use('UnsupportedMediaType') };
const adminCommon: JsonObject = { ...v1Common, '401': use('Unauthorized'), '404': use('NotFound') };
const admin = { tags: ['admin'], security: [{ adminToken: [] }] };
// Declared, not left out: an operation without `security` reads as "whatever the root says".
const noToken = { security: [] };

const body = (schema: string, example: JsonObject, required = true): JsonObject => ({
  required,
  content: json(ref(schema), example),
});
const ok = (description: string, schema: string, example?: JsonObject): JsonObject => ({
  description,
  content: json(ref(schema), example),
});

const exampleResult = {
  ...examplePackage,
  status: 'unknown',
  threatIndex: null,
  source: null,
  basis: null,
  known: false,
  pending: true,
  firstSeenAt: null,
  cacheTtlS: 300,
};

/** A compressed request body: inflated before parsing, the 1 MB limit on the inflated bytes. */
const contentEncoding: JsonObject = {
  name: 'Content-Encoding',
  in: 'header',
  required: false,
  description:
    'gzip, deflate or br for a compressed body; the 1 MB limit applies to the inflated body (413 beyond it), ' +
    'another encoding is 415 unsupported_encoding, a truncated or corrupt stream 400',
  schema: { enum: ['gzip', 'deflate', 'br', 'identity'] },
};

function packageParams(): Json[] {
  return [
    {
      name: 'name',
      in: 'path',
      required: true,
      schema: { type: 'string', maxLength: 255 },
      example: examplePackage.name,
    },
    {
      name: 'versionCode',
      in: 'path',
      required: true,
      schema: { type: 'integer', minimum: 0 },
      example: examplePackage.versionCode,
    },
    {
      name: 'signature',
      in: 'path',
      required: true,
      schema: { type: 'string', pattern: '^[0-9a-fA-F]{64}$' },
      example: examplePackage.signature,
    },
  ];
}

function paths(): JsonObject {
  return {
    '/v1/packages/check': {
      post: {
        ...noToken,
        operationId: 'checkPackages',
        tags: ['packages'],
        summary: 'What is known about each package; buffers the ones never seen',
        description:
          'Answers 1 … 1000 packages in request order (duplicates answered once each). Packages unknown to the ' +
          'cache and PostgreSQL are buffered in Redis for the flusher; the API never writes PostgreSQL here ' +
          'unless Redis is down. `degraded: true` when Redis or PostgreSQL did not answer.',
        parameters: [contentEncoding],
        requestBody: body('CheckRequest', { packages: [examplePackage] }),
        responses: {
          '200': {
            ...ok('one result per requested package', 'CheckResponse', {
              results: [
                exampleResult,
                {
                  ...examplePackage,
                  name: 'com.example.other',
                  status: 'malicious',
                  threatIndex: 0.97,
                  source: 'manual',
                  basis: 'signer',
                  known: true,
                  pending: false,
                  firstSeenAt: '2026-01-02T03:04:05.000Z',
                  cacheTtlS: 21600,
                },
              ],
              degraded: false,
            }),
            headers: { ...answerHeaders, 'Cache-Control': header('CacheControlCheck') },
          },
          ...jsonOnly,
          ...v1Common,
          '503': use('BufferFullOrUnavailable'),
        },
      },
    },
    '/v1/packages/{name}/{versionCode}/{signature}': {
      get: {
        ...noToken,
        operationId: 'getPackage',
        tags: ['packages'],
        summary: 'One package, read-only (buffers nothing)',
        parameters: packageParams(),
        responses: {
          '200': {
            ...ok(
              'the package, stored or pending, or never seen but signed by a certificate with a verdict (basis signer)',
              'SinglePackageResponse',
              {
                ...exampleResult,
                degraded: false,
              },
            ),
            headers: { ...answerHeaders, 'Cache-Control': header('CacheControlPackage') },
          },
          '400': use('BadRequest'),
          '404': use('NotFound'),
          ...v1Common,
          '503': use('Unavailable'),
        },
      },
    },
    '/v1/admin/evaluations': {
      post: {
        ...admin,
        operationId: 'recordEvaluations',
        summary: 'Record verdicts; every pod answers the new status at once',
        description:
          'An evaluation of a package never seen inserts it. The status of a package is its latest manual evaluation, ' +
          'else its latest model evaluation. Optional `X-Actor` header names who recorded it.',
        parameters: [
          {
            name: 'X-Actor',
            in: 'header',
            required: false,
            schema: { type: 'string', pattern: '^[A-Za-z0-9._@-]{1,64}$' },
          },
        ],
        requestBody: body('EvaluationsRequest', {
          evaluations: [{ ...examplePackage, verdict: 'malicious', source: 'manual', threatIndex: 0.97 }],
        }),
        responses: {
          '200': ok('all evaluations recorded', 'EvaluationsResponse', { accepted: 1 }),
          ...jsonOnly,
          ...adminCommon,
          '503': use('Unavailable'),
        },
      },
    },
    '/v1/admin/signer-evaluations': {
      post: {
        ...admin,
        operationId: 'recordSignerEvaluations',
        summary:
          'Record verdicts on signing certificates; every pod answers them at once for every package signed',
        description:
          "A signer's verdict is its latest manual evaluation, else its latest model evaluation (history is kept). " +
          "It answers every package the certificate signs, stored or not, unless the package's own verdict outranks it: " +
          "the package's manual verdict, the signer's manual verdict, the package's model verdict, the signer's model " +
          'verdict, in that order (`basis` in each result says which answered). Packages stay in the analysis queue. ' +
          'Optional `X-Actor` header names who recorded it, as for package evaluations.',
        parameters: [
          {
            name: 'X-Actor',
            in: 'header',
            required: false,
            schema: { type: 'string', pattern: '^[A-Za-z0-9._@-]{1,64}$' },
          },
        ],
        requestBody: body('SignerEvaluationsRequest', {
          evaluations: [
            {
              signature: examplePackage.signature,
              verdict: 'malicious',
              source: 'manual',
              threatIndex: 0.97,
            },
          ],
        }),
        responses: {
          '200': ok('all signer evaluations recorded', 'EvaluationsResponse', { accepted: 1 }),
          ...jsonOnly,
          ...adminCommon,
          '503': use('Unavailable'),
        },
      },
    },
    '/v1/admin/analysis/claim': {
      post: {
        ...admin,
        operationId: 'claimAnalysis',
        summary:
          'Claim new packages waiting for analysis, most reported first (lease-based, FOR UPDATE SKIP LOCKED)',
        description:
          'Hands out the packages that the most check requests carried first (stored reports; ties: queued ' +
          'earliest first), so that analysts look first at what is spreading.',
        requestBody: body('ClaimRequest', { limit: 100 }),
        responses: {
          '200': ok('claimed packages, most reported first', 'ClaimResponse', {
            packages: [
              {
                ...examplePackage,
                firstSeenAt: '2026-01-01T00:00:00.000Z',
                reports: 1840,
                lastSeenAt: '2026-01-01T06:00:00.000Z',
                claimedUntil: '2026-01-01T06:10:00.000Z',
                attempts: 1,
              },
            ],
          }),
          ...jsonOnly,
          ...adminCommon,
          '503': use('Unavailable'),
        },
      },
    },
    '/v1/admin/verdict-changes': {
      get: {
        ...admin,
        operationId: 'listVerdictChanges',
        summary:
          'Every change of an answered status, in commit order, paged by an opaque cursor (for push services)',
        description:
          'A follower stores `next` and passes it back as `after`; it never misses a change however evaluations ' +
          'commit concurrently (ids are assigned in commit order) and never sees one twice. Without `after`: from ' +
          'the oldest change kept. Changes are kept FEED_RETENTION_DAYS (default 30); a cursor older than that is ' +
          '410 cursor_expired with `oldest`: resynchronise (re-check what the devices hold), then follow from it. ' +
          'Read from the primary, so a change is in the feed as soon as its evaluation was answered.',
        parameters: [
          {
            name: 'after',
            in: 'query',
            required: false,
            schema: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,40}$' },
            description: 'a cursor returned as `next` (or `oldest`)',
            example: 'dmMxOjEyMzQ',
          },
          {
            name: 'limit',
            in: 'query',
            required: false,
            schema: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
            example: 100,
          },
        ],
        responses: {
          '200': ok('changes after the cursor, oldest first', 'VerdictChangesResponse', {
            changes: [
              {
                kind: 'package',
                ...examplePackage,
                status: 'malicious',
                source: 'manual',
                basis: 'package',
                threatIndex: 0.97,
                changedAt: '2026-01-01T05:00:00.000Z',
              },
            ],
            next: 'dmMxOjEyMzU',
          }),
          '400': use('BadRequest'),
          '410': {
            description:
              'the cursor is older than the oldest change kept (FEED_RETENTION_DAYS): changes were missed',
            content: json(ref('CursorExpiredResponse'), {
              error: {
                code: 'cursor_expired',
                message:
                  'changes after this cursor were deleted by retention (FEED_RETENTION_DAYS); resynchronise, then follow from `oldest`',
                details: [{ path: 'after', message: 'expired' }],
              },
              oldest: 'dmMxOjEwMDA',
            }),
          },
          ...adminCommon,
          '503': use('Unavailable'),
        },
      },
    },
    '/v1/admin/packages/{name}/{versionCode}/{signature}': {
      get: {
        ...admin,
        operationId: 'getPackageDetail',
        summary:
          "One package for analysts: reports, first and last seen, its own status and verdict history, its signer's verdict, the answer a check gives, analysis state",
        description:
          '`reports` is exact: what PostgreSQL holds plus the deltas still buffered in Redis, so either one not ' +
          'answering is 503. 404 when the package was never seen (not stored, not pending, never counted).',
        parameters: packageParams(),
        responses: {
          '200': ok('the package', 'PackageDetailResponse', {
            ...examplePackage,
            known: true,
            pending: false,
            firstSeenAt: '2026-01-01T00:00:00.000Z',
            lastSeenAt: '2026-01-01T06:00:00.000Z',
            reports: 1840,
            reportsBuffered: 12,
            status: 'malicious',
            threatIndex: 0.97,
            source: 'manual',
            evaluations: [
              {
                verdict: 'malicious',
                source: 'manual',
                threatIndex: 0.97,
                createdAt: '2026-01-01T05:00:00.000Z',
                createdBy: 'alice',
              },
            ],
            evaluationsTotal: 1,
            analysis: { queued: false, enqueuedAt: null, claimedUntil: null, attempts: null },
            signer: { status: 'suspicious', threatIndex: 0.6, source: 'model', rev: 2 },
            answer: { status: 'malicious', threatIndex: 0.97, source: 'manual', basis: 'package' },
          }),
          '400': use('BadRequest'),
          ...adminCommon,
          '503': use('Unavailable'),
        },
      },
    },
    '/v1/admin/buffer': {
      get: {
        ...admin,
        operationId: 'bufferStats',
        summary:
          'Buffer depth, oldest pending age, dead letters and report deltas per partition; the last flush',
        responses: {
          '200': ok('buffer state', 'BufferResponse', {
            partitions: [
              {
                partition: 0,
                depth: 12,
                oldestPendingAgeMs: 840,
                deadLetters: 0,
                reportDeltas: 230,
                oldestReportDeltaAgeMs: 910,
              },
            ],
            depth: 12,
            deadLetters: 0,
            oldestPendingAgeMs: 840,
            reportDeltas: 230,
            oldestReportDeltaAgeMs: 910,
            lastFlush: { at: '2026-01-01T00:00:00.000Z', rows: 5000, newRows: 4100, deadLettered: 0, ms: 85 },
          }),
          ...adminCommon,
          '503': use('Unavailable'),
        },
      },
    },
    '/v1/admin/flush': {
      post: {
        ...admin,
        operationId: 'requestFlush',
        summary: 'Schedule a flush tick now',
        responses: {
          '202': ok('a flush job was queued', 'FlushResponse', { scheduled: true }),
          ...bodyErrors,
          ...adminCommon,
          '503': use('Unavailable'),
        },
      },
    },
    '/v1/admin/dead-letters': {
      get: {
        ...admin,
        operationId: 'listDeadLetters',
        summary: 'Entries PostgreSQL refused, with its error',
        responses: {
          '200': ok('dead letters', 'DeadLettersResponse', { deadLetters: [] }),
          ...adminCommon,
          '503': use('Unavailable'),
        },
      },
    },
    '/v1/admin/dead-letters/redrive': {
      post: {
        ...admin,
        operationId: 'redriveDeadLetters',
        summary: 'Put dead letters back into the buffer (all, or the listed keys)',
        requestBody: body('RedriveRequest', {}, false),
        responses: {
          '200': ok('how many were put back', 'RedriveResponse', { redriven: 0 }),
          ...jsonOnly,
          ...adminCommon,
          '503': use('Unavailable'),
        },
      },
    },
    '/healthz': {
      get: {
        ...noToken,
        operationId: 'healthz',
        tags: ['operations'],
        summary: 'Liveness: the process answers',
        responses: { '200': ok('alive', 'Health', { status: 'ok' }) },
      },
    },
    '/readyz': {
      get: {
        ...noToken,
        operationId: 'readyz',
        tags: ['operations'],
        summary: 'Readiness: 503 only when neither Redis nor PostgreSQL answers',
        description:
          'The API serves (degraded) with one of the two, so one outage keeps the pod ready: failing it would ' +
          'pull every pod at once and turn a degraded service into a full outage.',
        responses: {
          '200': ok('ready, or degraded but serving', 'Readiness', {
            status: 'degraded',
            checks: { postgres: false, redis: true },
          }),
          '503': ok('cannot serve', 'Readiness', {
            status: 'not_ready',
            checks: { postgres: false, redis: false },
          }),
        },
      },
    },
    '/metrics': {
      get: {
        ...noToken,
        operationId: 'metrics',
        tags: ['operations'],
        summary: 'Prometheus metrics (text exposition format)',
        responses: {
          '200': {
            description: 'Prometheus text',
            content: { 'text/plain': { schema: { type: 'string' } } },
          },
        },
      },
    },
    '/openapi.json': {
      get: {
        ...noToken,
        operationId: 'openapi',
        tags: ['operations'],
        summary: 'This document',
        responses: {
          '200': {
            description: 'OpenAPI 3.1 document',
            content: { 'application/json': { schema: { type: 'object' } } },
          },
        },
      },
    },
  };
}

/** The OpenAPI 3.1 document of the whole HTTP API; tested against the implementation (test/openapi.test.ts). */
export function openApiDocument(): JsonObject {
  return {
    openapi: '3.1.0',
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    info: {
      title: 'safepkg API',
      version: '0.1.0',
      description:
        'Package reputation for Android devices. Every error is `{ "error": { "code", "message", "details" } }`; ' +
        'request bodies are JSON, at most 1 MB once inflated (Content-Encoding gzip, deflate or br accepted). ' +
        'Answers of at least COMPRESS_MIN_BYTES are compressed (gzip or br) when Accept-Encoding asks for it. ' +
        'Each package result carries `cacheTtlS`: how many seconds the device may keep it before asking again.',
    },
    // Relative: the API is wherever this document was fetched from (each deployment has its own host).
    servers: [{ url: '/', description: 'the api that served this document' }],
    tags: [
      { name: 'packages', description: 'device-facing' },
      { name: 'admin', description: 'operators and analysts (bearer ADMIN_TOKEN)' },
      { name: 'operations', description: 'probes, metrics, this document' },
    ],
    paths: paths(),
    components: {
      schemas: componentSchemas,
      responses: errorResponses,
      headers: headerComponents,
      securitySchemes: { adminToken: { type: 'http', scheme: 'bearer', description: 'ADMIN_TOKEN' } },
    },
  };
}
