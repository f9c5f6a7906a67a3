import type { ReportBuffer, ReportGroup } from './report-buffer';

/**
 * Distinct packages at which an open batch is sent even while another write is in flight: one
 * call of this size keeps Redis busy for a few milliseconds (about 3 µs of Redis CPU a package),
 * so a slow Redis never turns into one huge script that blocks every other client.
 */
export const MAX_COALESCED_PACKAGES = 2000;

/** One check's distinct keys and its time. */
interface CountedCheck {
  keys: readonly string[];
  now: number;
}

interface Batch {
  /** The checks' keys as they came; merged per package only once a second check joins. */
  checks: CountedCheck[];
  /** Packages in the batch, counting a package once per check (a bound on the distinct ones). */
  size: number;
  done: Promise<void>;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * Group commit of report counts: the checks answered while a count write is in flight share the
 * next write. A package carried by several of them is written once with their summed count and
 * the latest of their times, so Redis pays one hash update where it paid one per check (a
 * popular app is in most checks), and the api one script call per batch instead of per check.
 *
 * Nothing accepted is lost and nothing is counted for a check answered 503: each check awaits
 * its batch's write before its answer, and a failed write fails every check of the batch (on a
 * single Redis the script is atomic, so none of them was counted; a write that timed out after
 * Redis ran it is the one ambiguous case, as for a check written alone). For a single Redis only:
 * on a Cluster a batch would be several calls that can fail apart (app.ts writes each check alone
 * there). With no write in flight a
 * batch is sent on the next turn of the event loop, so a lone check waits no extra round trip.
 */
export class ReportCoalescer {
  private open: Batch | null = null;
  private inFlight = 0;
  private scheduled = false;

  constructor(
    private readonly reports: Pick<ReportBuffer, 'add' | 'addGroups'>,
    private readonly maxPackages = MAX_COALESCED_PACKAGES,
  ) {}

  /** Counts one report of each key (distinct keys, one check) at `now`; resolves once written. */
  add(keys: readonly string[], now: number): Promise<void> {
    if (keys.length === 0) return Promise.resolve();
    const batch = (this.open ??= newBatch());
    batch.checks.push({ keys, now });
    batch.size += keys.length;
    if (batch.size >= this.maxPackages) this.send();
    else if (this.inFlight === 0) this.schedule();
    return batch.done;
  }

  /** Sends the open batch on the next turn, so the checks answered in this one join it. */
  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      if (this.inFlight === 0) this.send();
    });
  }

  private send(): void {
    const batch = this.open;
    if (!batch) return;
    this.open = null;
    this.inFlight += 1;
    // A write that throws instead of rejecting settles the batch too: inFlight must come back
    // down, or every later batch would wait for a write that never ends.
    let written: Promise<void>;
    try {
      written = this.write(batch);
    } catch (err) {
      written = Promise.reject(err);
    }
    written.then(
      () => this.settled(() => batch.resolve()),
      (err: unknown) => this.settled(() => batch.reject(err)),
    );
  }

  private settled(settle: () => void): void {
    this.inFlight -= 1;
    settle();
    // The checks that arrived during the write go next, together.
    if (this.inFlight === 0 && this.open) this.send();
  }

  /**
   * A lone check as it came (one group per partition). Several merged per package: its count is
   * the number of checks that carried it, its time the latest of theirs, and packages sharing
   * both go as one group. Keyed by numbers (the latest check's index and the count), with one
   * Map entry per distinct package: this runs for every batch on the check path.
   */
  private write(batch: Batch): Promise<void> {
    const { checks } = batch;
    const [only] = checks;
    if (checks.length === 1 && only) return this.reports.add(only.keys, only.now);
    const index = new Map<string, number>();
    const distinct: string[] = [];
    const counts: number[] = [];
    const latest: number[] = [];
    for (let j = 0; j < checks.length; j++) {
      const { keys, now } = checks[j] as CountedCheck;
      for (const key of keys) {
        const i = index.get(key);
        if (i === undefined) {
          index.set(key, distinct.length);
          distinct.push(key);
          counts.push(1);
          latest.push(j);
        } else {
          counts[i] = (counts[i] as number) + 1;
          if (now > (checks[latest[i] as number] as CountedCheck).now) latest[i] = j;
        }
      }
    }
    const n = checks.length;
    const groups = new Map<number, ReportGroup & { keys: string[] }>();
    for (let i = 0; i < distinct.length; i++) {
      const j = latest[i] as number;
      const count = counts[i] as number;
      // count <= n, so (j, count) -> j * n + count - 1 is one-to-one.
      const id = j * n + count - 1;
      let g = groups.get(id);
      if (!g) {
        g = { count, lastSeenAt: (checks[j] as CountedCheck).now, keys: [] };
        groups.set(id, g);
      }
      g.keys.push(distinct[i] as string);
    }
    return this.reports.addGroups([...groups.values()]);
  }
}

function newBatch(): Batch {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const done = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // A batch whose checks all gave up still settles; its rejection must not be unhandled.
  done.catch(() => undefined);
  return { checks: [], size: 0, done, resolve, reject };
}
