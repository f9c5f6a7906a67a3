import type { Pool } from 'pg';
import type { Logger } from './logger';
import type { PackageRef } from './package-key';
import { packageKey } from './package-key';
import type { StoredSigner } from './signer-store';
import type { PackageStore, StoredPackage } from './store';
import { currentWalLsn, parseLsn, type VerdictLsn } from './verdict-lsn';

/** Where a lookup went, and why (the metric's labels). */
export type LookupReason =
  /** a healthy replica that has replayed the last verdict */
  | 'replica'
  /** a ReadPool without replicas (the api builds none then; kept so the pool stands alone) */
  | 'no_replica'
  /** every replica down, lagging past REPLICA_MAX_LAG_MS, or not a standby */
  | 'replicas_unhealthy'
  /** healthy replicas, but none has replayed the last verdict commit yet */
  | 'replicas_behind_verdict'
  /** the last verdict LSN could not be read (Redis down, or lost): no replica is trusted */
  | 'verdict_lsn_unknown'
  /** the chosen replica failed the query: asked again on the primary */
  | 'replica_failed'
  /** a replica had no row for some keys: only the primary may say "no such package" */
  | 'confirm_miss';

export interface ReplicaState {
  /** host:port/database of its URL (never the password). */
  name: string;
  /** Its last poll answered and it is a standby. */
  up: boolean;
  /** Replay lag over the bound, or its WAL receiver is not streaming. */
  lagging: boolean;
  lagMs: number | null;
  replayLsn: bigint | null;
}

export interface ReadPoolObserver {
  /** One lookup's target (`primary` or a replica's name) and why it went there. */
  lookup(target: string, reason: LookupReason): void;
}

export interface Replica {
  name: string;
  pool: Pool;
  store: PackageStore;
}

export interface ReadPoolOptions {
  primary: PackageStore;
  replicas: readonly Replica[];
  verdictLsn: VerdictLsn;
  maxLagMs: number;
  pollIntervalMs: number;
  logger: Logger;
  observer?: ReadPoolObserver;
}

interface PollRow {
  standby: boolean;
  replay_lsn: string | null;
  lag_ms: number | null;
  receiving: boolean;
}

// Lag by replay timestamp, but 0 when everything received is replayed: an idle primary sends
// nothing new, and now() - last replay time would grow without the replica being behind.
// Exported so the bench samples replication lag exactly as the api judges it.
export const REPLICA_POLL_SQL = `SELECT pg_is_in_recovery() AS standby,
    pg_last_wal_replay_lsn()::text AS replay_lsn,
    CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0
         ELSE (EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) * 1000)::float8 END AS lag_ms,
    COALESCE((SELECT status = 'streaming' FROM pg_stat_wal_receiver), false) AS receiving`;

/** host:port/database of a URL, for labels and logs. */
export function replicaName(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || '5432'}${u.pathname}`;
  } catch {
    return 'replica';
  }
}

/**
 * Routes the api's lookups: to a streaming replica when one is healthy and has replayed the
 * last verdict commit (so no pod can answer a verdict older than one committed), otherwise
 * to the primary. Replica health comes from a background poll per replica, never from a
 * query per request; the only per-lookup cost is one Redis GET of the last verdict LSN.
 */
export class ReadPool {
  private readonly states: ReplicaState[];
  private next = 0;
  private timers: NodeJS.Timeout[] = [];
  private stopped = false;

  constructor(private readonly options: ReadPoolOptions) {
    this.states = options.replicas.map((r) => ({
      name: r.name,
      up: false,
      lagging: false,
      lagMs: null,
      replayLsn: null,
    }));
  }

  /** Polls every replica now and then every pollIntervalMs until stop(). */
  start(): void {
    this.stopped = false;
    this.options.replicas.forEach((_, i) => void this.pollLoop(i));
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers = [];
  }

  /** stop(), then ends the replicas' pools. */
  async close(): Promise<void> {
    this.stop();
    await Promise.all(this.options.replicas.map((r) => r.pool.end().catch(() => undefined)));
  }

  replicaStates(): readonly ReplicaState[] {
    return this.states.map((s) => ({ ...s }));
  }

  /**
   * The stored packages among refs. With `confirmMisses`, a key the replica has no row for
   * is asked again on the primary: a replica's "no row" may only mean "not replayed yet".
   */
  async lookupMany(
    refs: readonly PackageRef[],
    { confirmMisses = false } = {},
  ): Promise<Map<string, StoredPackage>> {
    const { primary, replicas, observer } = this.options;
    const onPrimary = (reason: LookupReason) => {
      observer?.lookup('primary', reason);
      return primary.lookupMany(refs);
    };
    if (replicas.length === 0) return onPrimary('no_replica');
    const chosen = await this.choose();
    if (typeof chosen === 'string') return onPrimary(chosen);
    const replica = replicas[chosen] as Replica;
    let found: Map<string, StoredPackage>;
    try {
      found = await replica.store.lookupMany(refs);
    } catch (err) {
      // Left until its next poll answers; this lookup is not degraded, the primary answers it.
      (this.states[chosen] as ReplicaState).up = false;
      this.options.logger.warn({ err, replica: replica.name }, 'replica lookup failed; asking the primary');
      return onPrimary('replica_failed');
    }
    observer?.lookup(replica.name, 'replica');
    if (confirmMisses && found.size < refs.length) {
      const missing = refs.filter((r) => !found.has(packageKey(r)));
      observer?.lookup('primary', 'confirm_miss');
      for (const [k, p] of await primary.lookupMany(missing)) found.set(k, p);
    }
    return found;
  }

  /**
   * The current verdicts of these signing certificates, routed as lookupMany is. A replica
   * past the verdict LSN has replayed every signer verdict commit (SignerEvaluationService
   * raises it too), so its "no row" is the primary's: no confirmation needed.
   */
  async lookupSigners(signatures: readonly string[]): Promise<Map<string, StoredSigner>> {
    const { primary, replicas, observer } = this.options;
    const onPrimary = (reason: LookupReason) => {
      observer?.lookup('primary', reason);
      return primary.lookupSigners(signatures);
    };
    if (replicas.length === 0) return onPrimary('no_replica');
    const chosen = await this.choose();
    if (typeof chosen === 'string') return onPrimary(chosen);
    const replica = replicas[chosen] as Replica;
    try {
      const found = await replica.store.lookupSigners(signatures);
      observer?.lookup(replica.name, 'replica');
      return found;
    } catch (err) {
      (this.states[chosen] as ReplicaState).up = false;
      this.options.logger.warn({ err, replica: replica.name }, 'replica lookup failed; asking the primary');
      return onPrimary('replica_failed');
    }
  }

  /** A replica's index (round-robin over the usable ones), or why the primary must answer. */
  private async choose(): Promise<number | LookupReason> {
    const healthy = this.states.map((s, i) => ({ s, i })).filter(({ s }) => s.up && !s.lagging);
    if (healthy.length === 0) return 'replicas_unhealthy';
    let required: bigint | null;
    try {
      required = await this.options.verdictLsn.read();
    } catch {
      required = null;
    }
    if (required === null) return 'verdict_lsn_unknown';
    const current = healthy.filter(({ s }) => s.replayLsn !== null && s.replayLsn >= required);
    if (current.length === 0) return 'replicas_behind_verdict';
    this.next = (this.next + 1) % current.length;
    return (current[this.next] as { i: number }).i;
  }

  private async pollLoop(i: number): Promise<void> {
    if (this.stopped) return;
    await this.poll(i);
    if (this.stopped) return;
    const timer = setTimeout(() => void this.pollLoop(i), this.options.pollIntervalMs);
    timer.unref();
    this.timers[i] = timer;
  }

  private async poll(i: number): Promise<void> {
    await this.pollReplica(i);
    await this.reseedVerdictLsn();
  }

  private async pollReplica(i: number): Promise<void> {
    const replica = this.options.replicas[i] as Replica;
    const state = this.states[i] as ReplicaState;
    try {
      const { rows } = await replica.pool.query<PollRow>(REPLICA_POLL_SQL);
      const row = rows[0] as PollRow;
      if (!row.standby || row.replay_lsn === null) {
        if (state.up)
          this.options.logger.warn({ replica: replica.name }, 'not a standby; not used for lookups');
        Object.assign(state, { up: false, lagging: false, lagMs: null, replayLsn: null });
        return;
      }
      const lagMs = row.lag_ms === null ? null : Math.max(0, row.lag_ms);
      // A replica that does not hear from its primary cannot tell how far behind it is.
      const lagging = !row.receiving || lagMs === null || lagMs > this.options.maxLagMs;
      Object.assign(state, { up: true, lagging, lagMs, replayLsn: parseLsn(row.replay_lsn) });
    } catch (err) {
      if (state.up) this.options.logger.warn({ err, replica: replica.name }, 'replica poll failed');
      Object.assign(state, { up: false, lagging: false, lagMs: null, replayLsn: null });
    }
  }

  /**
   * A Redis that restarted empty has lost the last verdict LSN, and with it every replica
   * is distrusted. The primary's current position is past every commit made so far, so it
   * is a safe value to put back (replicas are used again once they replay that far).
   */
  private async reseedVerdictLsn(): Promise<void> {
    try {
      if ((await this.options.verdictLsn.read()) !== null) return;
      await this.options.verdictLsn.raise(await currentWalLsn(this.options.primary.pool));
    } catch {
      // Redis or the primary is down: lookups stay on the primary until this succeeds.
    }
  }
}
