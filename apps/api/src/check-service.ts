import {
  BufferFullError,
  DECODED_MEMO_ENTRIES,
  packageKey,
  signerStatusOf,
  statusOf,
  UnavailableError,
  type CachedSigner,
  type CachedStatus,
  type CountTarget,
  type Logger,
  type PackageRef,
  type PackageStore,
  type ReadPool,
  type RedisBuffer,
  type ReportCoalescer,
  type ResultCache,
  type StoredPackage,
  type StoredSigner,
  type WriteMode,
} from '@safepkg/core';
import type { ApiMetrics } from './metrics';

export type Status = 'safe' | 'malicious' | 'suspicious' | 'unknown';
/** Which verdict answered: the package's own, its signing certificate's, or none (unknown). */
export type Basis = 'package' | 'signer' | null;

export interface PackageResult extends PackageRef {
  status: Status;
  threatIndex: number | null;
  source: 'manual' | 'model' | null;
  basis: Basis;
  /** In PostgreSQL. */
  known: boolean;
  /** In the buffer, not yet flushed. */
  pending: boolean;
  firstSeenAt: string | null;
}

export interface CheckAnswer {
  results: PackageResult[];
  degraded: boolean;
}

export interface CheckHooks {
  /** Runs after the PostgreSQL lookups (packages and signers) and before the cache fill. */
  afterLookup?: () => Promise<void>;
}

export interface ReadCounting {
  /** The reports hashes a check's packages are counted in. */
  targetOf(keys: readonly string[]): CountTarget;
  /** Whether a command sent now goes to Redis at once (else it fails unsent: no offline queue). */
  ready(): boolean;
}

export interface CheckDeps {
  cache: ResultCache;
  store: PackageStore;
  /** Where lookups go (replicas or the primary); absent = every lookup on `store`. */
  reads?: Pick<ReadPool, 'lookupMany' | 'lookupSigners'>;
  buffer: RedisBuffer;
  /** Null only in the benchmark's baseline (SAFEPKG_TEST_NO_REPORTS=1): reports are not counted. */
  reports: Pick<ReportCoalescer, 'add'> | null;
  /**
   * Counting in the cache read itself when every package is cached (one Redis round trip per
   * check instead of two). Null on a Redis Cluster (the read spans slots), in direct mode (reports
   * go to PostgreSQL) and when reports are not counted.
   */
  readCounting: ReadCounting | null;
  writeMode: WriteMode;
  /**
   * Misses pending in the buffer and first buffered less than this long ago (ms) are answered
   * pending without a PostgreSQL lookup; 0 = always look up. From `pendingAnswerWindowMs()`.
   */
  pendingAnswerWindowMs: number;
  metrics: ApiMetrics;
  logger: Logger;
  hooks?: CheckHooks;
}

/**
 * How long counting reads may be out with none settling before checks read plainly instead
 * (`CheckService.countingTarget`): far above a healthy Redis's milliseconds, far below the
 * command timeout.
 */
const COUNTING_READ_STALL_MS = 250;

function fromStatus(ref: PackageRef, s: CachedStatus): PackageResult {
  return {
    name: ref.name,
    versionCode: ref.versionCode,
    signature: ref.signature,
    status: s.verdict ?? 'unknown',
    threatIndex: s.threatIndex,
    source: s.source,
    basis: s.verdict ? 'package' : null,
    known: true,
    pending: false,
    firstSeenAt: isoTime(s.firstSeenAt),
  };
}

/** ISO strings of first-seen times, per process (hot packages' times recur on every check). */
const isoTimes = new Map<number, string>();

/** `new Date(ms).toISOString()`, memoized: it costs about a JSON.parse per package (~390 ns). */
function isoTime(ms: number): string {
  let iso = isoTimes.get(ms);
  if (iso === undefined) {
    iso = new Date(ms).toISOString();
    if (isoTimes.size >= DECODED_MEMO_ENTRIES) isoTimes.clear();
    isoTimes.set(ms, iso);
  }
  return iso;
}

function unknownResult(ref: PackageRef, pending: boolean): PackageResult {
  return {
    name: ref.name,
    versionCode: ref.versionCode,
    signature: ref.signature,
    status: 'unknown',
    threatIndex: null,
    source: null,
    basis: null,
    known: false,
    pending,
    firstSeenAt: null,
  };
}

/**
 * The answer from a package's own status and its signer's, in order: the package's manual
 * verdict, the signer's manual verdict, the package's model verdict, the signer's model
 * verdict. Only status, source, threatIndex and basis change; known/pending/firstSeenAt stay
 * the package's. Combined at answer time, so a signer verdict never rewrites package entries.
 */
export function withSigner(result: PackageResult, signer: CachedSigner | undefined): PackageResult {
  if (!signer?.verdict || result.source === 'manual') return result;
  if (result.source === 'model' && signer.source !== 'manual') return result;
  return {
    ...result,
    status: signer.verdict,
    threatIndex: signer.threatIndex,
    source: signer.source,
    basis: 'signer',
  };
}

/**
 * The check path: cache (one MGET of the packages and their signers; on a single Redis one script
 * that also counts the check's reports when every package is cached, the whole answer then being
 * sure, so a cache-hit check costs one round trip) → one PostgreSQL query
 * for the package misses, and one beside it for the signer misses → rev-guarded cache fill →
 * buffer the packages unknown everywhere; each answer combined with its signer's verdict. It never writes PostgreSQL in
 * buffered mode unless Redis is down, and it degrades instead of failing while either
 * Redis or PostgreSQL still answers.
 */
export class CheckService {
  /**
   * Cleared when a counting read fails (Redis may have counted the check; it is answered 503),
   * set again by the next plain read that succeeds: while Redis does not answer, checks read
   * plainly and fall back to PostgreSQL as before instead of all failing.
   */
  private countOnRead = true;
  /**
   * Share of recent checks whose packages were all cached (an average over about the last 32).
   * A check with a miss counts after its answer anyway, and its counting read costs more to send
   * than an MGET; so checks read counting only while most recent ones were full hits.
   */
  private fullHitShare = 1;
  /** Counting reads sent and not settled, and when one last settled (or was sent with none out). */
  private countingInFlight = 0;
  private countingProgressAt = 0;

  constructor(private readonly deps: CheckDeps) {}

  async check(refs: readonly PackageRef[], now = Date.now()): Promise<CheckAnswer> {
    const { cache, metrics } = this.deps;
    // Each ref's key once: the answer is looked up by it again at the end.
    const refKeys = refs.map(packageKey);
    const unique = new Map<string, PackageRef>();
    refs.forEach((r, i) => unique.set(refKeys[i] as string, r));
    const keys = [...unique.keys()];
    const answers = new Map<string, PackageResult>();

    const signatures = [...new Set([...unique.values()].map((r) => r.signature))];
    let redisUp = true;
    let cached = new Map<string, CachedStatus>();
    const signers = new Map<string, CachedSigner>();
    // Whether the cache read counted this check (every package was cached).
    let counted = false;
    const counting = this.countingTarget(keys);
    try {
      // A cached entry the script counted but decodeCached refuses would be looked up and could
      // still end in a 503: the script's test (the prefix cache-fill writes) makes that a corrupt
      // entry only.
      const read = counting
        ? await this.readCounting(keys, signatures, counting, now)
        : { ...(await cache.read(keys, signatures)), counted: false };
      cached = read.packages;
      for (const [sig, st] of read.signers) signers.set(sig, st);
      counted = read.counted;
      if (!counting) this.countOnRead = true;
      this.fullHitShare += ((read.packages.size === keys.length ? 1 : 0) - this.fullHitShare) / 32;
    } catch (err) {
      if (counting) {
        // Sent to a Redis that was up: the script may have run and counted the check, so a
        // fallback that answers 200 and counts again could over-count. Unknown outcome: 503.
        this.countOnRead = false;
        this.deps.logger.warn(
          { err },
          'counting cache read failed; answering 503, reading plainly until Redis answers',
        );
        throw new UnavailableError('Redis did not answer; retry the check', { cause: err });
      }
      redisUp = false;
      this.degrade('redis', err);
    }
    for (const [k, s] of cached) answers.set(k, fromStatus(unique.get(k) as PackageRef, s));
    metrics.cache.inc({ result: 'hit' }, cached.size);
    metrics.cache.inc({ result: 'miss' }, keys.length - cached.size);

    let misses = keys.filter((k) => !cached.has(k));
    if (redisUp && misses.length > 0) misses = await this.answerPending(misses, unique, now, answers);
    const signerMisses = signatures.filter((sig) => !signers.has(sig));
    let postgresUp = true;
    let stored = new Map<string, StoredPackage>();
    let signerFills: { signature: string; status: CachedSigner }[] = [];
    if (misses.length > 0 || signerMisses.length > 0) {
      metrics.postgresLookups.inc(misses.length);
      try {
        // Concurrently, so the signer misses cost no extra round trip; no query for either when
        // it has no misses (a hot signature is a cache hit, its verdict or its negative entry).
        const [packages, signerRows] = await Promise.all([
          misses.length > 0
            ? this.lookup(misses.map((k) => unique.get(k) as PackageRef))
            : new Map<string, StoredPackage>(),
          signerMisses.length > 0 ? this.lookupSigners(signerMisses) : new Map<string, StoredSigner>(),
        ]);
        stored = packages;
        signerFills = signerMisses.map((signature) => ({
          signature,
          status: signerStatusOf(signerRows.get(signature)),
        }));
        for (const f of signerFills) signers.set(f.signature, f.status);
      } catch (err) {
        postgresUp = false;
        this.degrade('postgres', err);
      }
    }
    if (!redisUp && !postgresUp) throw new UnavailableError('neither Redis nor PostgreSQL is answering');
    let degraded = !redisUp || !postgresUp;

    for (const [k, p] of stored) answers.set(k, fromStatus(p, statusOf(p)));
    if (stored.size > 0 || signerFills.length > 0) await this.deps.hooks?.afterLookup?.();
    const fill = redisUp ? this.fillCache(stored, signerFills) : Promise.resolve();

    const unknown = misses.filter((k) => !stored.has(k)).map((k) => unique.get(k) as PackageRef);
    // Whether this request's packages went to PostgreSQL without Redis; its reports go there too.
    let withoutRedis = !redisUp;
    if (unknown.length > 0) {
      const direct = this.deps.writeMode === 'direct' && postgresUp;
      if (direct || !redisUp) {
        await this.writeDirect(unknown, now, answers);
      } else {
        try {
          await this.bufferUnknown(unknown, now, answers);
        } catch (err) {
          if (err instanceof BufferFullError || !postgresUp) throw this.unavailable(err);
          // Redis failed between the cache read and the buffer write: PostgreSQL still takes it.
          this.degrade('redis', err);
          degraded = true;
          withoutRedis = true;
          await this.writeDirect(unknown, now, answers);
        }
      }
    }
    await fill;
    // Counted last, once nothing else can fail: a request answered 503 (buffer_full, unavailable)
    // counts nothing, and every package of a request answered 200 counts once. A check whose
    // packages were all cached was counted by its read: nothing after it can fail.
    // WRITE_MODE=direct writes everything on the request path, its reports too: the baseline
    // the buffer is measured against is a design without one, not a direct insert whose counts
    // still go through the buffer and the flusher.
    const countDirect = this.deps.writeMode === 'direct' && postgresUp && !withoutRedis;
    if (counted) this.deps.metrics.reports.inc({ via: 'redis' }, keys.length);
    else if (!countDirect) await this.countReports(unique, keys, now, withoutRedis);
    else if (!(await this.countReportsInPostgres(unique, keys, now))) degraded = true;

    const results = refKeys.map((k) => {
      const result = answers.get(k) as PackageResult;
      return withSigner(result, signers.get(result.signature));
    });
    this.countStatuses(results);
    metrics.checks.inc({ outcome: degraded ? 'degraded' : 'ok' });
    return { results, degraded };
  }

  /**
   * Read-only lookup of one package: never buffers. Null ("never seen") only when both
   * PostgreSQL (no row) and Redis (not pending) answered; when either could not be asked the
   * answer is unknown, so it throws `unavailable` and the client retries instead of concluding
   * the package does not exist.
   */
  async get(ref: PackageRef): Promise<{ result: PackageResult; degraded: boolean } | null> {
    const key = packageKey(ref);
    let redisUp = true;
    let hit: CachedStatus | undefined;
    let signer: CachedSigner | undefined;
    try {
      const read = await this.deps.cache.read([key], [ref.signature]);
      hit = read.packages.get(key);
      signer = read.signers.get(ref.signature);
      if (hit && signer) return { result: withSigner(fromStatus(ref, hit), signer), degraded: false };
    } catch (err) {
      redisUp = false;
      this.degrade('redis', err);
    }
    let postgresUp = true;
    let row: StoredPackage | undefined;
    try {
      // A replica's "no row" may only mean "not replayed yet": a 404 needs the primary's word.
      const [rows, signerRows] = await Promise.all([
        hit ? new Map<string, StoredPackage>() : this.lookup([ref], { confirmMisses: true }),
        signer ? new Map<string, StoredSigner>() : this.lookupSigners([ref.signature]),
      ]);
      row = rows.get(key);
      const signerFills = signer
        ? []
        : [{ signature: ref.signature, status: signerStatusOf(signerRows.get(ref.signature)) }];
      signer ??= signerFills[0]?.status;
      if (redisUp) await this.fillCache(row ? new Map([[key, row]]) : new Map(), signerFills);
    } catch (err) {
      postgresUp = false;
      this.degrade('postgres', err);
    }
    // The package from the cache, PostgreSQL down: answered with the signer verdicts cached.
    if (hit) return { result: withSigner(fromStatus(ref, hit), signer), degraded: !postgresUp };
    if (row) return { result: withSigner(fromStatus(ref, statusOf(row)), signer), degraded: !redisUp };
    if (!redisUp) {
      throw new UnavailableError(
        postgresUp
          ? 'Redis is not answering: whether the package is pending is unknown'
          : 'neither Redis nor PostgreSQL is answering',
      );
    }
    let pending: boolean | undefined;
    try {
      [pending] = await this.deps.buffer.isPending([key]);
    } catch (err) {
      this.degrade('redis', err);
      throw new UnavailableError('Redis is not answering: whether the package is pending is unknown', {
        cause: err,
      });
    }
    if (pending) return { result: withSigner(unknownResult(ref, true), signer), degraded: !postgresUp };
    if (!postgresUp)
      throw new UnavailableError('PostgreSQL is not answering: whether the package is stored is unknown');
    // Never seen, but signed by a certificate with a verdict: that verdict is the answer (a 404
    // would tell the device nothing is known about a package its signer already condemns).
    if (signer?.verdict) return { result: withSigner(unknownResult(ref, false), signer), degraded: false };
    return null;
  }

  /**
   * Answers the misses buffered moments ago as pending, without PostgreSQL: a hot new app
   * reported by thousands of devices before its flush would otherwise cost a lookup on every
   * check. Young only (`pendingAnswerWindowMs`, at most half the cache TTL): such an entry was
   * buffered after a lookup found no row, so any verdict on it was committed later and written
   * through to the cache, whose entry outlives the window; the cache was read first. Older
   * entries (a stalled flusher, redriven dead letters) are looked up as usual. Returns the misses
   * left to look up; on a Redis error, all of them (the buffer add reports the outage).
   */
  private async answerPending(
    misses: string[],
    unique: Map<string, PackageRef>,
    now: number,
    answers: Map<string, PackageResult>,
  ): Promise<string[]> {
    const window = this.deps.pendingAnswerWindowMs;
    if (window <= 0 || this.deps.writeMode !== 'buffered') return misses;
    let since: Map<string, number>;
    try {
      since = await this.deps.buffer.pendingSince(misses);
    } catch (err) {
      this.deps.logger.warn({ err }, 'pending lookup in the buffer failed; asking PostgreSQL');
      return misses;
    }
    const left: string[] = [];
    let answered = 0;
    for (const k of misses) {
      const t = since.get(k);
      if (t !== undefined && now - t < window) {
        answers.set(k, unknownResult(unique.get(k) as PackageRef, true));
        answered++;
      } else left.push(k);
    }
    this.deps.metrics.pendingAnswers.inc(answered);
    return left;
  }

  /**
   * Where the cache read counts this check, or null for a plain read: after a counting read
   * failed (`countOnRead`), while fewer than half the recent checks were full hits
   * (`fullHitShare`), and while counting reads are out with none settled for
   * COUNTING_READ_STALL_MS. A Redis that stopped answering fails a counting read only at the
   * command timeout; without the stall test every check sent until then would be a 503, where a
   * plain read falls back to PostgreSQL and answers.
   */
  private countingTarget(keys: readonly string[]): CountTarget | null {
    const rc = this.deps.readCounting;
    if (!rc || !this.countOnRead || keys.length === 0 || this.fullHitShare < 0.5 || !rc.ready()) return null;
    if (this.countingInFlight > 0 && Date.now() - this.countingProgressAt > COUNTING_READ_STALL_MS)
      return null;
    return rc.targetOf(keys);
  }

  private async readCounting(
    keys: readonly string[],
    signatures: readonly string[],
    target: CountTarget,
    now: number,
  ) {
    if (this.countingInFlight++ === 0) this.countingProgressAt = Date.now();
    try {
      return await this.deps.cache.readCounting(keys, signatures, target, now);
    } finally {
      this.countingInFlight--;
      this.countingProgressAt = Date.now();
    }
  }

  private lookupSigners(signatures: readonly string[]) {
    return this.deps.reads
      ? this.deps.reads.lookupSigners(signatures)
      : this.deps.store.lookupSigners(signatures);
  }

  private lookup(refs: readonly PackageRef[], options?: { confirmMisses?: boolean }) {
    return this.deps.reads ? this.deps.reads.lookupMany(refs, options) : this.deps.store.lookupMany(refs);
  }

  /**
   * One report per distinct package. Normally into Redis, coalesced with the checks answered
   * together (one script call per batch; per touched partition on a cluster), after the buffer
   * add: a counted package is then always buffered or stored, which the flusher's ordering
   * relies on. Without Redis, and in direct mode, straight into PostgreSQL, where the request's
   * packages now are. A failure here makes the request 503 (nothing else was answered yet).
   */
  private async countReports(
    unique: Map<string, PackageRef>,
    keys: string[],
    now: number,
    inPostgres: boolean,
  ) {
    const { metrics, reports } = this.deps;
    if (!reports) return;
    try {
      if (inPostgres) await this.deps.store.countReportsDirect([...unique.values()], new Date(now));
      else await reports.add(keys, now);
    } catch (err) {
      this.degrade(inPostgres ? 'postgres' : 'redis', err);
      throw new UnavailableError('cannot count the reports right now', { cause: err });
    }
    metrics.reports.inc({ via: inPostgres ? 'postgres' : 'redis' }, keys.length);
  }

  /**
   * Direct mode's count, in PostgreSQL. A check that never needed PostgreSQL (all cached) learns
   * here that it is down: its count then goes to Redis, as a buffered api's would, and the answer
   * is degraded instead of a 503 while Redis still answers. False when it went to Redis. (A
   * statement that failed only after it committed would count twice; this is the baseline mode.)
   */
  private async countReportsInPostgres(
    unique: Map<string, PackageRef>,
    keys: string[],
    now: number,
  ): Promise<boolean> {
    try {
      await this.countReports(unique, keys, now, true);
      return true;
    } catch (err) {
      if (!(err instanceof UnavailableError)) throw err;
      await this.countReports(unique, keys, now, false);
      return false;
    }
  }

  private async bufferUnknown(unknown: PackageRef[], now: number, answers: Map<string, PackageResult>) {
    const { buffer, metrics } = this.deps;
    const keys = unknown.map(packageKey);
    let already: boolean[];
    try {
      already = await buffer.add(keys.map((key) => ({ key, payload: { t: now } })));
    } catch (err) {
      if (err instanceof BufferFullError) metrics.bufferAdds.inc({ result: 'buffer_full' }, unknown.length);
      throw err;
    }
    let fresh = 0;
    unknown.forEach((ref, i) => {
      if (!already[i]) fresh++;
      answers.set(keys[i] as string, unknownResult(ref, true));
    });
    metrics.bufferAdds.inc({ result: 'new' }, fresh);
    metrics.bufferAdds.inc({ result: 'already_pending' }, unknown.length - fresh);
  }

  private async writeDirect(unknown: PackageRef[], now: number, answers: Map<string, PackageResult>) {
    const firstSeenAt = new Date(now);
    let rows: Map<string, StoredPackage>;
    try {
      rows = await this.deps.store.insertDirect(unknown.map((ref) => ({ ref, firstSeenAt })));
    } catch (err) {
      throw this.unavailable(err);
    }
    this.deps.metrics.directWrites.inc(unknown.length);
    for (const ref of unknown) {
      const key = packageKey(ref);
      const row = rows.get(key);
      answers.set(key, row ? fromStatus(ref, statusOf(row)) : unknownResult(ref, false));
    }
  }

  private async fillCache(
    stored: Map<string, StoredPackage>,
    signers: readonly { signature: string; status: CachedSigner }[] = [],
  ): Promise<void> {
    if (stored.size === 0 && signers.length === 0) return;
    try {
      await this.deps.cache.fill(
        [...stored].map(([key, p]) => ({ key, status: statusOf(p) })),
        signers,
      );
    } catch (err) {
      // A failed fill only costs a later cache miss.
      this.deps.logger.warn({ err }, 'cache fill failed');
    }
  }

  /** One counter update per status present, not per package (a labelled inc hashes its labels). */
  private countStatuses(results: readonly PackageResult[]) {
    const counts = new Map<Status, number>();
    for (const r of results) counts.set(r.status, (counts.get(r.status) ?? 0) + 1);
    for (const [status, n] of counts) this.deps.metrics.packages.inc({ status }, n);
  }

  private degrade(dependency: 'redis' | 'postgres', err: unknown) {
    this.deps.metrics.degraded.inc({ dependency });
    this.deps.logger.warn({ err, dependency }, 'dependency failed; answering degraded');
  }

  private unavailable(err: unknown): Error {
    if (err instanceof BufferFullError || err instanceof UnavailableError) return err;
    return new UnavailableError('cannot record unknown packages right now', { cause: err });
  }
}
