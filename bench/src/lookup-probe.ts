import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { PackageStore } from '@safepkg/core';
import { Pool } from 'pg';
import { Catalogue, type CatalogueOptions } from './catalogue';
import { Random } from './random';

export interface ProbeOptions {
  databaseUrl: string;
  catalogue: CatalogueOptions;
  /** Concurrent closed loops (one connection each). */
  concurrency: number;
  keysPerLookup: number;
  /**
   * Cores the probe process is moved to (taskset) right after its fork; without, it runs
   * where the benchmark process runs (the split topology's load-generator core).
   */
  cores?: number[] | null;
}

interface ProbeTick {
  at: number;
  lookups: number;
  /** Each lookup's duration (ms) since the previous tick. */
  ms?: number[];
}

/**
 * A side process doing `lookupMany` of known keys in closed loops, to measure how much
 * lookup capacity PostgreSQL has left while the service ingests. A separate process, so
 * that its event loop is not the load generator's.
 */
export class LookupProbe {
  private last: ProbeTick = { at: Date.now(), lookups: 0 };
  private ticks: ProbeTick[] = [];

  private constructor(private readonly child: ChildProcess) {
    child.on('message', (m: ProbeTick) => {
      this.last = m;
      this.ticks.push(m);
    });
  }

  static async start(options: ProbeOptions): Promise<LookupProbe> {
    const child = fork(join(__dirname, 'lookup-probe.js'), [JSON.stringify(options)], { stdio: 'inherit' });
    // Moved before its pool connects, so every lookup it times ran on those cores.
    if (options.cores && child.pid !== undefined)
      execFileSync('taskset', ['-a', '-p', '-c', options.cores.join(','), String(child.pid)], {
        stdio: 'ignore',
      });
    const probe = new LookupProbe(child);
    await new Promise<void>((resolve, reject) => {
      child.once('message', () => resolve());
      child.once('exit', (code) => reject(new Error(`lookup probe exited with ${code}`)));
    });
    return probe;
  }

  /** The probe process's pid (its placement is recorded from /proc). */
  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Cumulative lookups now (the child reports every 200 ms). */
  mark(): ProbeTick {
    return this.last;
  }

  /** The last report at or before `at` (Date.now() ms), to cut windows by time after the fact. */
  markAt(at: number): ProbeTick {
    let mark = this.ticks[0] ?? this.last;
    for (const t of this.ticks) if (t.at <= at) mark = t;
    return mark;
  }

  /** Every lookup's duration (ms) reported after `from` and up to `to`. */
  latencies(from: ProbeTick, to: ProbeTick): number[] {
    return this.ticks.filter((t) => t.at > from.at && t.at <= to.at).flatMap((t) => t.ms ?? []);
  }

  /** Lookups per second between two marks. */
  static rate(from: ProbeTick, to: ProbeTick): number {
    return to.at > from.at ? ((to.lookups - from.lookups) * 1000) / (to.at - from.at) : 0;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGTERM');
    await exited;
  }
}

async function runProbe(options: ProbeOptions): Promise<void> {
  const catalogue = new Catalogue(options.catalogue);
  const pool = new Pool({
    connectionString: options.databaseUrl,
    max: options.concurrency,
    application_name: 'safepkg-bench-probe',
  });
  const store = new PackageStore(pool);
  let lookups = 0;
  let ms: number[] = [];
  let running = true;
  process.on('SIGTERM', () => {
    running = false;
  });
  const report = setInterval(() => {
    process.send?.({ at: Date.now(), lookups, ms });
    ms = [];
  }, 200);
  process.send?.({ at: Date.now(), lookups });
  await Promise.all(
    Array.from({ length: options.concurrency }, async (_, loop) => {
      const rng = new Random(1000 + loop);
      while (running) {
        const refs = Array.from({ length: options.keysPerLookup }, () =>
          catalogue.known(rng.int(catalogue.options.knownApps)),
        );
        const started = performance.now();
        const found = await store.lookupMany(refs);
        ms.push(performance.now() - started);
        // Every probed key is seeded; a miss would mean the probe measures the wrong thing.
        const distinct = new Set(refs.map((r) => r.name)).size;
        if (found.size !== distinct)
          throw new Error(`probe found ${found.size} of ${distinct} known packages`);
        lookups++;
      }
    }),
  );
  clearInterval(report);
  await pool.end();
  process.exit(0);
}

if (require.main === module) {
  runProbe(JSON.parse(process.argv[2] as string) as ProbeOptions).catch((err: unknown) => {
    console.error('lookup probe failed:', err);
    process.exit(1);
  });
}
