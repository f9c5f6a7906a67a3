import { MAX_NAME_LENGTH, MAX_PACKAGES_PER_REQUEST } from '@safepkg/core';
import { MIN_NORMAL_FLOAT4 } from './schemas';

/** A JSON value: what an OpenAPI document (and each schema in it) is made of. */
export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

export const ref = (name: string): JsonObject => ({ $ref: `#/components/schemas/${name}` });

const EXAMPLE_SIGNATURE = '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08';
const iso = { type: 'string', format: 'date-time' } as const;

// Patterns are the ones the API validates with (packages/core/src/package-key.ts), as strings.
const packageFields: JsonObject = {
  name: {
    type: 'string',
    maxLength: MAX_NAME_LENGTH,
    pattern: '^[A-Za-z][A-Za-z0-9_]*(\\.[A-Za-z][A-Za-z0-9_]*)+$',
    description: 'Android application id',
    examples: ['com.example.app'],
  },
  versionCode: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER, examples: [42] },
  signature: {
    type: 'string',
    pattern: '^[0-9a-fA-F]{64}$',
    description: 'SHA-256 of the signing certificate; answered lower-case',
    examples: [EXAMPLE_SIGNATURE],
  },
};

const resultRequired = [
  'name',
  'versionCode',
  'signature',
  'status',
  'threatIndex',
  'source',
  'basis',
  'known',
  'pending',
  'firstSeenAt',
  'cacheTtlS',
];
const resultProperties: JsonObject = {
  ...packageFields,
  signature: { type: 'string', pattern: '^[0-9a-f]{64}$' },
  status: { enum: ['safe', 'malicious', 'suspicious', 'unknown'] },
  threatIndex: { type: ['number', 'null'], minimum: 0, maximum: 1 },
  source: { enum: ['manual', 'model', null], description: 'of the verdict that answered (see basis)' },
  basis: {
    enum: ['package', 'signer', null],
    description:
      "which verdict answered: the package's own, or its signing certificate's; null when status is unknown. " +
      "Order: the package's manual verdict, the signer's manual verdict, the package's model verdict, the signer's model verdict",
  },
  known: { type: 'boolean', description: 'the package is in PostgreSQL' },
  pending: { type: 'boolean', description: 'the package is in the buffer, not yet flushed' },
  firstSeenAt: {
    ...iso,
    type: ['string', 'null'],
    description: 'when a device first reported it; null until it is stored',
  },
  cacheTtlS: {
    type: 'integer',
    minimum: 0,
    description:
      'seconds the device may keep this result before asking again, by status (ANSWER_TTL_UNKNOWN_S, ' +
      'ANSWER_TTL_SAFE_S, ANSWER_TTL_SUSPICIOUS_S, ANSWER_TTL_MALICIOUS_S); in a degraded answer at most the unknown one',
    examples: [300],
  },
};

const verdictFields: JsonObject = {
  verdict: { enum: ['safe', 'malicious', 'suspicious'] },
  source: { enum: ['manual', 'model'] },
  threatIndex: {
    anyOf: [{ const: 0 }, { type: 'number', minimum: MIN_NORMAL_FLOAT4, maximum: 1 }],
    description: `0, or ${MIN_NORMAL_FLOAT4} (the smallest normal PostgreSQL real) … 1; values in between are refused with 400`,
  },
};

/** components.schemas: JSON Schema 2020-12, the dialect of OpenAPI 3.1. */
export const componentSchemas: JsonObject = {
  VerdictChange: {
    type: 'object',
    additionalProperties: false,
    required: [
      'kind',
      'name',
      'versionCode',
      'signature',
      'status',
      'source',
      'basis',
      'threatIndex',
      'changedAt',
    ],
    properties: {
      kind: {
        enum: ['package', 'signer'],
        description:
          "package: one package's answer changed; signer: a verdict on a signing certificate changed",
      },
      name: {
        ...(packageFields.name as JsonObject),
        type: ['string', 'null'],
        description: 'null for a signer change',
      },
      versionCode: {
        type: ['integer', 'null'],
        minimum: 0,
        maximum: Number.MAX_SAFE_INTEGER,
        description: 'null for a signer change',
      },
      signature: { type: 'string', pattern: '^[0-9a-f]{64}$' },
      status: { enum: ['safe', 'malicious', 'suspicious'], description: 'the status now answered' },
      source: { enum: ['manual', 'model'] },
      basis: {
        enum: ['package', 'signer'],
        description: "whose verdict the answer rests on: the package's own or its signer's",
      },
      threatIndex: { type: 'number', minimum: 0, maximum: 1 },
      changedAt: iso,
    },
  },
  VerdictChangesResponse: {
    type: 'object',
    additionalProperties: false,
    required: ['changes', 'next'],
    properties: {
      changes: { type: 'array', maxItems: 1000, items: ref('VerdictChange'), description: 'in commit order' },
      next: {
        type: 'string',
        pattern: '^[A-Za-z0-9_-]{1,40}$',
        description: 'opaque cursor: pass it as `after` to read on; returned even for an empty page',
      },
    },
  },
  CursorExpiredResponse: {
    ...envelope({ const: 'cursor_expired' }),
    required: ['error', 'oldest'],
    properties: {
      ...((envelope({ const: 'cursor_expired' }).properties ?? {}) as JsonObject),
      oldest: {
        type: 'string',
        pattern: '^[A-Za-z0-9_-]{1,40}$',
        description: 'cursor to follow from the oldest change kept, after resynchronising',
      },
    },
  },
  PackageRef: {
    type: 'object',
    additionalProperties: false,
    required: ['name', 'versionCode', 'signature'],
    properties: packageFields,
  },
  CheckRequest: {
    type: 'object',
    additionalProperties: false,
    required: ['packages'],
    properties: {
      packages: { type: 'array', minItems: 1, maxItems: MAX_PACKAGES_PER_REQUEST, items: ref('PackageRef') },
    },
  },
  PackageResult: {
    type: 'object',
    additionalProperties: false,
    required: resultRequired,
    properties: resultProperties,
  },
  CheckResponse: {
    type: 'object',
    additionalProperties: false,
    required: ['results', 'degraded'],
    properties: {
      results: {
        type: 'array',
        items: ref('PackageResult'),
        description: 'one per requested package, in request order',
      },
      degraded: {
        type: 'boolean',
        description: 'Redis or PostgreSQL did not answer and the answer was given without it',
      },
    },
  },
  SinglePackageResponse: {
    type: 'object',
    additionalProperties: false,
    required: [...resultRequired, 'degraded'],
    properties: { ...resultProperties, degraded: { type: 'boolean' } },
  },
  Evaluation: {
    type: 'object',
    additionalProperties: false,
    required: ['name', 'versionCode', 'signature', 'verdict', 'source', 'threatIndex'],
    properties: { ...packageFields, ...verdictFields },
  },
  SignerEvaluation: {
    type: 'object',
    additionalProperties: false,
    required: ['signature', 'verdict', 'source', 'threatIndex'],
    properties: { signature: packageFields.signature as JsonObject, ...verdictFields },
  },
  SignerEvaluationsRequest: {
    type: 'object',
    additionalProperties: false,
    required: ['evaluations'],
    properties: {
      evaluations: {
        type: 'array',
        minItems: 1,
        maxItems: MAX_PACKAGES_PER_REQUEST,
        items: ref('SignerEvaluation'),
      },
    },
  },
  EvaluationsRequest: {
    type: 'object',
    additionalProperties: false,
    required: ['evaluations'],
    properties: {
      evaluations: {
        type: 'array',
        minItems: 1,
        maxItems: MAX_PACKAGES_PER_REQUEST,
        items: ref('Evaluation'),
      },
    },
  },
  EvaluationsResponse: {
    type: 'object',
    additionalProperties: false,
    required: ['accepted'],
    properties: { accepted: { type: 'integer', minimum: 0 } },
  },
  ClaimRequest: {
    type: 'object',
    additionalProperties: false,
    required: ['limit'],
    properties: { limit: { type: 'integer', minimum: 1, maximum: 1000 } },
  },
  ClaimResponse: {
    type: 'object',
    additionalProperties: false,
    required: ['packages'],
    properties: {
      packages: {
        type: 'array',
        items: {
          type: 'object',
          additionalProperties: false,
          required: [
            'name',
            'versionCode',
            'signature',
            'firstSeenAt',
            'reports',
            'lastSeenAt',
            'claimedUntil',
            'attempts',
          ],
          properties: {
            ...packageFields,
            firstSeenAt: iso,
            reports: {
              type: 'integer',
              minimum: 0,
              description: 'check requests answered 200 that carried it, as stored (the order of the claim)',
            },
            lastSeenAt: { ...iso, type: ['string', 'null'], description: 'the latest such check, as stored' },
            claimedUntil: {
              ...iso,
              description: 'the package is handed out again after this unless evaluated',
            },
            attempts: { type: 'integer', minimum: 1 },
          },
        },
      },
    },
  },
  PackageDetailResponse: {
    type: 'object',
    additionalProperties: false,
    required: [
      'name',
      'versionCode',
      'signature',
      'known',
      'pending',
      'firstSeenAt',
      'lastSeenAt',
      'reports',
      'reportsBuffered',
      'status',
      'threatIndex',
      'source',
      'evaluations',
      'evaluationsTotal',
      'analysis',
      'signer',
      'answer',
    ],
    properties: {
      ...packageFields,
      signature: { type: 'string', pattern: '^[0-9a-f]{64}$' },
      known: { type: 'boolean', description: 'the package is in PostgreSQL' },
      pending: { type: 'boolean', description: 'the package is in the buffer, not yet flushed' },
      firstSeenAt: {
        ...iso,
        type: ['string', 'null'],
        description: 'stored first-seen time; null until stored',
      },
      lastSeenAt: {
        ...iso,
        type: ['string', 'null'],
        description: 'the latest check answered 200 that carried it (api clock), stored or still buffered',
      },
      reports: {
        type: 'integer',
        minimum: 0,
        description: 'check requests answered 200 that carried it: stored plus still buffered in Redis',
      },
      reportsBuffered: { type: 'integer', minimum: 0, description: 'the part of `reports` not yet flushed' },
      status: { enum: ['safe', 'malicious', 'suspicious', 'unknown'] },
      threatIndex: { type: ['number', 'null'], minimum: 0, maximum: 1 },
      source: { enum: ['manual', 'model', null] },
      evaluations: {
        type: 'array',
        maxItems: 50,
        description: 'verdict history, newest first, at most 50',
        items: {
          type: 'object',
          additionalProperties: false,
          required: ['verdict', 'source', 'threatIndex', 'createdAt', 'createdBy'],
          properties: {
            verdict: { enum: ['safe', 'malicious', 'suspicious'] },
            source: { enum: ['manual', 'model'] },
            threatIndex: { type: 'number', minimum: 0, maximum: 1 },
            createdAt: iso,
            createdBy: { type: 'string' },
          },
        },
      },
      evaluationsTotal: { type: 'integer', minimum: 0 },
      analysis: {
        type: 'object',
        additionalProperties: false,
        required: ['queued', 'enqueuedAt', 'claimedUntil', 'attempts'],
        description: 'queued: waiting for analysis (claimedUntil set while an analyst holds it)',
        properties: {
          queued: { type: 'boolean' },
          enqueuedAt: { ...iso, type: ['string', 'null'] },
          claimedUntil: { ...iso, type: ['string', 'null'] },
          attempts: { type: ['integer', 'null'], minimum: 0 },
        },
      },
      signer: {
        type: ['object', 'null'],
        additionalProperties: false,
        required: ['status', 'threatIndex', 'source', 'rev'],
        description:
          "the signing certificate's current verdict (POST /v1/admin/signer-evaluations); null when it has none",
        properties: {
          status: { enum: ['safe', 'malicious', 'suspicious'] },
          threatIndex: { type: 'number', minimum: 0, maximum: 1 },
          source: { enum: ['manual', 'model'] },
          rev: { type: 'integer', minimum: 1 },
        },
      },
      answer: {
        type: 'object',
        additionalProperties: false,
        required: ['status', 'threatIndex', 'source', 'basis'],
        description:
          "what a check answers for it now: the package's own verdict (status, threatIndex, source above) combined with its signer's, package manual > signer manual > package model > signer model",
        properties: {
          status: { enum: ['safe', 'malicious', 'suspicious', 'unknown'] },
          threatIndex: { type: ['number', 'null'], minimum: 0, maximum: 1 },
          source: { enum: ['manual', 'model', null] },
          basis: { enum: ['package', 'signer', null] },
        },
      },
    },
  },
  PartitionStats: {
    type: 'object',
    additionalProperties: false,
    required: [
      'partition',
      'depth',
      'oldestPendingAgeMs',
      'deadLetters',
      'reportDeltas',
      'oldestReportDeltaAgeMs',
    ],
    properties: {
      partition: { type: 'integer', minimum: 0 },
      depth: { type: 'integer', minimum: 0 },
      oldestPendingAgeMs: { type: ['integer', 'null'], minimum: 0 },
      deadLetters: { type: 'integer', minimum: 0 },
      reportDeltas: {
        type: 'integer',
        minimum: 0,
        description: 'reports counted in Redis and not yet added to PostgreSQL (live plus in flight)',
      },
      oldestReportDeltaAgeMs: { type: ['integer', 'null'], minimum: 0 },
    },
  },
  BufferResponse: {
    type: 'object',
    additionalProperties: false,
    required: [
      'partitions',
      'depth',
      'deadLetters',
      'oldestPendingAgeMs',
      'reportDeltas',
      'oldestReportDeltaAgeMs',
      'lastFlush',
    ],
    properties: {
      partitions: { type: 'array', items: ref('PartitionStats') },
      depth: { type: 'integer', minimum: 0 },
      deadLetters: { type: 'integer', minimum: 0 },
      oldestPendingAgeMs: { type: ['integer', 'null'], minimum: 0 },
      reportDeltas: { type: 'integer', minimum: 0 },
      oldestReportDeltaAgeMs: { type: ['integer', 'null'], minimum: 0 },
      lastFlush: {
        oneOf: [
          { type: 'null' },
          {
            type: 'object',
            required: ['at', 'rows', 'newRows', 'deadLettered', 'ms'],
            properties: {
              at: iso,
              rows: { type: 'integer', minimum: 0 },
              newRows: { type: 'integer', minimum: 0 },
              deadLettered: { type: 'integer', minimum: 0 },
              reports: { type: 'integer', minimum: 0, description: 'package reports added to PostgreSQL' },
              ms: { type: 'number', minimum: 0 },
            },
          },
        ],
        description: 'the last flush tick that moved rows, as the flusher recorded it',
      },
    },
  },
  FlushResponse: {
    type: 'object',
    additionalProperties: false,
    required: ['scheduled'],
    properties: { scheduled: { const: true } },
  },
  DeadLetter: {
    type: 'object',
    additionalProperties: false,
    required: ['key', 'partition', 'firstSeenAt', 'error', 'deadAt'],
    properties: {
      key: { type: 'string', description: 'packageKey `<name>:<versionCode>:<signature>`' },
      partition: { type: 'integer', minimum: 0 },
      firstSeenAt: iso,
      error: {
        type: 'object',
        required: ['code', 'message'],
        properties: { code: { type: 'string' }, message: { type: 'string' } },
        description:
          'what PostgreSQL said (SQLSTATE and message); `corrupt_dead_letter` when the stored value could not be read ' +
          '(firstSeenAt and deadAt are then the listing time, and a redrive re-buffers the key with that time)',
      },
      deadAt: iso,
    },
  },
  DeadLettersResponse: {
    type: 'object',
    additionalProperties: false,
    required: ['deadLetters'],
    properties: { deadLetters: { type: 'array', items: ref('DeadLetter') } },
  },
  RedriveRequest: {
    type: 'object',
    additionalProperties: false,
    properties: {
      keys: {
        type: 'array',
        maxItems: 10000,
        items: { type: 'string', maxLength: 400 },
        description: 'all dead letters when omitted',
      },
    },
  },
  RedriveResponse: {
    type: 'object',
    additionalProperties: false,
    required: ['redriven'],
    properties: { redriven: { type: 'integer', minimum: 0 } },
  },
  Health: {
    type: 'object',
    additionalProperties: false,
    required: ['status'],
    properties: { status: { const: 'ok' } },
  },
  Readiness: {
    type: 'object',
    additionalProperties: false,
    required: ['status', 'checks'],
    properties: {
      status: {
        enum: ['ready', 'degraded', 'not_ready'],
        description: 'degraded: one of Redis/PostgreSQL is down and the API answers without it (still 200)',
      },
      checks: {
        type: 'object',
        additionalProperties: false,
        required: ['postgres', 'redis'],
        properties: { postgres: { type: 'boolean' }, redis: { type: 'boolean' } },
      },
    },
  },
};

/** The error envelope around a given schema of `code`. */
function envelope(code: JsonObject): JsonObject {
  return {
    type: 'object',
    additionalProperties: false,
    required: ['error'],
    properties: {
      error: {
        type: 'object',
        additionalProperties: false,
        required: ['code', 'message', 'details'],
        properties: {
          code,
          message: { type: 'string', description: 'for humans; may change' },
          details: {
            type: 'array',
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['path', 'message'],
              properties: {
                path: { type: 'string', examples: ['packages[3].signature'] },
                message: { type: 'string' },
              },
            },
          },
        },
      },
    },
  };
}

/**
 * The envelope with its `code` pinned to the codes a status can carry: a whole schema, not an
 * `allOf` over a shared envelope, because `additionalProperties: false` inside one branch of an
 * `allOf` does not see the other branch's properties (linters and generators read such a
 * composition as refusing `message` and `details`).
 */
export function errorSchema(codes: readonly string[]): JsonObject {
  return envelope({ type: 'string', enum: [...codes], description: 'stable machine-readable code' });
}

export const examplePackage = { name: 'com.example.app', versionCode: 42, signature: EXAMPLE_SIGNATURE };
