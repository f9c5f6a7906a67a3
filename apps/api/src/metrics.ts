import type { LookupReason, ReadPool, ReadPoolObserver } from '@safepkg/core';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** The API's Prometheus metrics, on a registry of its own (no global state). */
export class ApiMetrics {
  readonly registry = new Registry();
  readonly checks = new Counter({
    name: 'safepkg_checks_total',
    help: 'Check requests answered, by outcome',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly packages = new Counter({
    name: 'safepkg_checked_packages_total',
    help: 'Packages answered by check, by status',
    labelNames: ['status'] as const,
    registers: [this.registry],
  });
  readonly cache = new Counter({
    name: 'safepkg_cache_lookups_total',
    help: 'Result cache lookups, by result',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly bufferAdds = new Counter({
    name: 'safepkg_buffer_adds_total',
    help: 'Unknown packages sent to the buffer, by result (new, already_pending, buffer_full)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly directWrites = new Counter({
    name: 'safepkg_direct_writes_total',
    help: 'Unknown packages written straight to PostgreSQL (WRITE_MODE=direct or Redis down)',
    registers: [this.registry],
  });
  readonly reports = new Counter({
    name: 'safepkg_reports_counted_total',
    help: 'Package reports counted (distinct packages of checks answered 200), by where (redis: buffered deltas; postgres: WRITE_MODE=direct or without Redis)',
    labelNames: ['via'] as const,
    registers: [this.registry],
  });
  readonly degraded = new Counter({
    name: 'safepkg_degraded_answers_total',
    help: 'Answers given with degraded: true, by failed dependency',
    labelNames: ['dependency'] as const,
    registers: [this.registry],
  });
  readonly answerBytes = new Counter({
    name: 'safepkg_answer_bytes_total',
    help: 'JSON answer body bytes, by Content-Encoding sent (identity, gzip, br) and form (raw: before compression; sent: on the wire)',
    labelNames: ['encoding', 'form'] as const,
    registers: [this.registry],
  });
  readonly httpDuration = new Histogram({
    name: 'safepkg_http_request_duration_seconds',
    help: 'HTTP request latency by route and status code',
    labelNames: ['method', 'route', 'code'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });

  readonly pendingAnswers = new Counter({
    name: 'safepkg_pending_answers_total',
    help: 'Cache misses answered pending from the buffer (buffered moments ago) without a PostgreSQL lookup',
    registers: [this.registry],
  });

  readonly postgresLookups = new Counter({
    name: 'safepkg_check_postgres_lookups_total',
    help: 'Packages the check path looked up in PostgreSQL (misses left after the cache and the buffer)',
    registers: [this.registry],
  });

  readonly dbLookups = new Counter({
    name: 'safepkg_db_lookups_total',
    help: 'PostgreSQL lookups of the check and get paths, by target (primary or a replica) and reason',
    labelNames: ['target', 'reason'] as const,
    registers: [this.registry],
  });

  /** The read pool's per-replica state as gauges, read at scrape time. */
  observeReadPool(pool: ReadPool): void {
    const gauge = (
      name: string,
      help: string,
      value: (s: ReturnType<ReadPool['replicaStates']>[number]) => number | null,
    ) =>
      new Gauge({
        name,
        help,
        labelNames: ['replica'] as const,
        registers: [this.registry],
        collect() {
          this.reset();
          for (const s of pool.replicaStates()) {
            const v = value(s);
            if (v !== null) this.set({ replica: s.name }, v);
          }
        },
      });
    gauge('safepkg_replica_up', 'Replica answered its last poll as a standby (1) or not (0)', (s) =>
      s.up ? 1 : 0,
    );
    gauge(
      'safepkg_replica_lagging',
      'Replica lagging past REPLICA_MAX_LAG_MS or not streaming (1), so not used',
      (s) => (s.lagging ? 1 : 0),
    );
    gauge('safepkg_replica_lag_seconds', 'Replica replay lag at its last poll', (s) =>
      s.lagMs === null ? null : s.lagMs / 1000,
    );
  }

  readObserver(): ReadPoolObserver {
    return { lookup: (target: string, reason: LookupReason) => this.dbLookups.inc({ target, reason }) };
  }

  constructor({ defaultMetrics = true } = {}) {
    if (defaultMetrics) collectDefaultMetrics({ register: this.registry });
    // Every known label value starts at 0, so rate() and ratios work before the first event
    // and an alert on a series that never appeared cannot stay silent by absence.
    for (const outcome of ['ok', 'degraded']) this.checks.inc({ outcome }, 0);
    for (const status of ['safe', 'malicious', 'suspicious', 'unknown']) this.packages.inc({ status }, 0);
    for (const result of ['hit', 'miss']) this.cache.inc({ result }, 0);
    for (const result of ['new', 'already_pending', 'buffer_full']) this.bufferAdds.inc({ result }, 0);
    for (const dependency of ['redis', 'postgres']) this.degraded.inc({ dependency }, 0);
    this.dbLookups.inc({ target: 'primary', reason: 'replicas_unhealthy' }, 0);
    for (const via of ['redis', 'postgres']) this.reports.inc({ via }, 0);
  }
}
