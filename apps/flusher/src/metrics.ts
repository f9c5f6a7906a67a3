import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** The flusher's Prometheus metrics, on a registry of its own. */
export class FlusherMetrics {
  readonly registry = new Registry();
  readonly rows = new Counter({
    name: 'safepkg_flush_rows_total',
    help: 'Buffered entries written to PostgreSQL (new or already present)',
    registers: [this.registry],
  });
  readonly newRows = new Counter({
    name: 'safepkg_flush_new_rows_total',
    help: 'Packages that were really new and were queued for analysis',
    registers: [this.registry],
  });
  readonly batchDuration = new Histogram({
    name: 'safepkg_flush_batch_duration_seconds',
    help: 'Time to write one round (one transaction over entries of any number of partitions) to PostgreSQL and confirm it in Redis',
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly failures = new Counter({
    name: 'safepkg_flush_failures_total',
    help: 'Flush ticks that failed, by reason (unavailable: PostgreSQL or Redis did not answer; lease_lost)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly deadLetters = new Counter({
    name: 'safepkg_flush_dead_letters_total',
    help: 'Entries PostgreSQL refused, moved to dead letters',
    registers: [this.registry],
  });
  readonly leaseLosses = new Counter({
    name: 'safepkg_flush_lease_losses_total',
    help: 'Partition leases lost during a flush',
    registers: [this.registry],
  });
  readonly depth = new Gauge({
    name: 'safepkg_buffer_depth',
    help: 'Pending entries per partition',
    labelNames: ['partition'] as const,
    registers: [this.registry],
  });
  readonly oldestAge = new Gauge({
    name: 'safepkg_buffer_oldest_pending_age_seconds',
    help: 'Age of the oldest pending entry per partition',
    labelNames: ['partition'] as const,
    registers: [this.registry],
  });
  readonly deadLetterDepth = new Gauge({
    name: 'safepkg_buffer_dead_letters',
    help: 'Dead letters held per partition',
    labelNames: ['partition'] as const,
    registers: [this.registry],
  });
  readonly reports = new Counter({
    name: 'safepkg_flush_reports_total',
    help: 'Package reports (checks answered 200 that carried the package) added to PostgreSQL',
    registers: [this.registry],
  });
  readonly reportSets = new Counter({
    name: 'safepkg_flush_report_sets_total',
    help: 'Report delta sets written, by result (applied; already_applied: re-flushed after a crash or by another flusher, refused by the ledger)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly reportsUnmatched = new Counter({
    name: 'safepkg_flush_reports_unmatched_total',
    help: 'Report deltas dropped because PostgreSQL holds no such package (never expected from a check)',
    registers: [this.registry],
  });
  readonly bufferedReports = new Gauge({
    name: 'safepkg_buffered_reports',
    help: 'Reports counted in Redis and not yet in PostgreSQL, per partition',
    labelNames: ['partition'] as const,
    registers: [this.registry],
  });
  readonly reportsOldestAge = new Gauge({
    name: 'safepkg_buffered_reports_oldest_age_seconds',
    help: 'Age of the oldest report delta not yet in PostgreSQL, per partition',
    labelNames: ['partition'] as const,
    registers: [this.registry],
  });
  readonly lastSuccess = new Gauge({
    name: 'safepkg_flush_last_success_timestamp_seconds',
    help: 'When the last flush tick completed without error',
    registers: [this.registry],
  });

  readonly retentionSwept = new Counter({
    name: 'safepkg_retention_swept_total',
    help: 'Packages (no verdict, not reported for RETENTION_DAYS) deleted by the retention sweep, with their queue rows',
    registers: [this.registry],
  });
  readonly retentionHeld = new Counter({
    name: 'safepkg_retention_held_total',
    help: 'Sweep candidates kept because Redis held a buffer entry or report deltas for them',
    registers: [this.registry],
  });
  readonly retentionRebuffered = new Counter({
    name: 'safepkg_retention_rebuffered_total',
    help: 'Swept packages a check counted during the batch, buffered again so their reports find a row',
    registers: [this.registry],
  });
  readonly retentionSweepDuration = new Histogram({
    name: 'safepkg_retention_sweep_duration_seconds',
    help: 'Time of one retention sweep (its batches until the pass reaches the cut-off, stops or fails)',
    buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900],
    registers: [this.registry],
  });
  readonly retentionLastSweep = new Gauge({
    name: 'safepkg_retention_last_sweep_timestamp_seconds',
    help: 'When this flusher last finished a retention sweep without error',
    registers: [this.registry],
  });
  readonly retentionFailures = new Counter({
    name: 'safepkg_retention_failures_total',
    help: 'Retention sweeps stopped by an error (timeout: lock_timeout or statement_timeout; unavailable)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  constructor({ defaultMetrics = true } = {}) {
    if (defaultMetrics) collectDefaultMetrics({ register: this.registry });
    // Known label values start at 0 so that rate() over them works before the first failure.
    for (const reason of ['unavailable', 'lease_lost']) this.failures.inc({ reason }, 0);
    for (const result of ['applied', 'already_applied']) this.reportSets.inc({ result }, 0);
    for (const reason of ['timeout', 'unavailable']) this.retentionFailures.inc({ reason }, 0);
  }
}
