import { packageKey, type PackageRef } from '@safepkg/core';
import { pkg } from '@safepkg/testkit';
import { postCheck } from './chaos-client';

export interface LoadStats {
  /** Requests answered 200. */
  accepted: number;
  /** Attempts that got no answer (process killed mid-request) or a 503, and were retried. */
  retries: number;
  /** Attempts answered 503, by error code. */
  refused: Record<string, number>;
  /** Answers marked degraded: true. */
  degraded: number;
  /** Requests given up at the deadline (their packages are not counted as sent). */
  abandoned: number;
}

/**
 * The devices of the chaos run: `clients` concurrent senders of check requests with many
 * duplicates (a hot head of 300 packages, and one repeat inside every request). A package
 * counts as sent only once a 200 answered a request that carried it. The load can be
 * paused (for the Redis kill, which must come more than a second after the last accepted
 * write to stay inside the documented AOF loss bound).
 */
export class ChaosLoad {
  readonly sent = new Set<string>();
  /** Per package: requests answered 200 that carried it (each request once), what `reports` must equal. */
  readonly reports = new Map<string, number>();
  /**
   * Per package: attempts that carried it and whose outcome the client cannot know: no answer
   * (the api was killed after it may have counted, before it answered) or `503 unavailable`
   * (Redis failed around the count script). Stored reports may exceed `reports` by at most these.
   */
  readonly ambiguous = new Map<string, number>();
  readonly stats: LoadStats = { accepted: 0, retries: 0, refused: {}, degraded: 0, abandoned: 0 };
  lastAcceptedAt = 0;
  private inFlight = 0;
  private gate: Promise<void> | null = null;
  private openGate: (() => void) | null = null;
  private stopping = false;
  private seed: number;
  private running: Promise<void> | null = null;

  constructor(
    private readonly apiUrl: () => string | null,
    private readonly options: {
      clients: number;
      perRequest: number;
      distinct: number;
      namespace: string;
      seed?: number;
    },
  ) {
    this.seed = options.seed ?? 7;
  }

  start(): void {
    this.running = Promise.all(Array.from({ length: this.options.clients }, () => this.client())).then(
      () => undefined,
    );
  }

  /** Lets every client finish the request it is on (retrying until answered or `deadline`), then resolves. */
  async stop(deadline: number): Promise<void> {
    this.stopping = true;
    this.finishBy = deadline;
    this.resume();
    await this.running;
  }

  /** Holds new attempts and resolves once none is in flight. */
  async pause(): Promise<void> {
    if (!this.gate) this.gate = new Promise((resolve) => (this.openGate = resolve));
    while (this.inFlight > 0) await new Promise((r) => setTimeout(r, 10));
  }

  resume(): void {
    this.openGate?.();
    this.gate = null;
    this.openGate = null;
  }

  private finishBy = Number.POSITIVE_INFINITY;

  /** mulberry32: deterministic, and exact in 32-bit integer arithmetic (unlike a float LCG). */
  private random(): number {
    this.seed = (this.seed + 0x6d2b79f5) | 0;
    let t = Math.imul(this.seed ^ (this.seed >>> 15), 1 | this.seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  private body(): PackageRef[] {
    const { perRequest, distinct, namespace } = this.options;
    const body: PackageRef[] = [];
    for (let i = 0; i < perRequest - 1; i++) {
      const hot = this.random() < 0.4;
      body.push(pkg(hot ? Math.floor(this.random() * 300) : Math.floor(this.random() * distinct), namespace));
    }
    body.push(body[0] as PackageRef);
    return body;
  }

  /** +1 for each distinct package of a request (a package listed twice counts once). */
  private tally(counts: Map<string, number>, body: readonly PackageRef[]): void {
    for (const key of new Set(body.map(packageKey))) counts.set(key, (counts.get(key) ?? 0) + 1);
  }

  private async client(): Promise<void> {
    while (!this.stopping) await this.sendUntilAccepted(this.body());
  }

  private async sendUntilAccepted(body: PackageRef[]): Promise<void> {
    for (;;) {
      if (this.gate) await this.gate;
      if (Date.now() > this.finishBy) {
        this.stats.abandoned++;
        return;
      }
      const url = this.apiUrl();
      let wait = 50;
      if (url) {
        this.inFlight++;
        try {
          const res = await postCheck(url, body, AbortSignal.timeout(15_000));
          if (res.status === 200) {
            for (const r of res.results) this.sent.add(packageKey(r));
            this.tally(this.reports, body);
            this.stats.accepted++;
            if (res.degraded) this.stats.degraded++;
            this.lastAcceptedAt = Date.now();
            return;
          }
          const code = res.errorCode ?? String(res.status);
          if (code === 'unavailable') this.tally(this.ambiguous, body);
          this.stats.refused[code] = (this.stats.refused[code] ?? 0) + 1;
          if (res.retryAfter) wait = Math.min(1000, Number(res.retryAfter) * 1000);
        } catch {
          // No answer: the api died mid-request or is restarting. The check is idempotent: retry.
          this.tally(this.ambiguous, body);
        } finally {
          this.inFlight--;
        }
      }
      this.stats.retries++;
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}
