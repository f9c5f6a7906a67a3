import { cpus } from 'node:os';

export type Layout = 'split' | 'postgres-alone' | 'shared';

/**
 * Where each part of the benchmark runs. `split` is deployment-shaped: PostgreSQL on cores of
 * its own, the api processes alone on the others, and what a deployment would put on other
 * hosts (Redis, the flusher, the load generator, the lookup probe) next to PostgreSQL, where
 * they take nothing from the api. `postgres-alone` gives PostgreSQL its cores to itself and puts
 * everything else with the api: what the database has left for lookups then shows the write
 * load each mode puts on it alone, not also the buffer's Redis and flusher work (which in
 * `split` shares PostgreSQL's core and so counts against the buffered mode twice). `shared` is
 * the old layout: nothing pinned, the shared PostgreSQL and Redis servers, everything on every
 * core.
 */
export interface Topology {
  layout: Layout;
  cpus: number;
  /** null = not pinned (any core). */
  postgres: number[] | null;
  redis: number[] | null;
  api: number[] | null;
  flusher: number[] | null;
  /** The benchmark process itself: autocannon runs in it; the lookup probe is its child. */
  loadGenerator: number[] | null;
  /** Private servers started (and removed) by the benchmark, or the shared ones. */
  servers: 'private' | 'shared';
}

export function planTopology(layout: Layout, cpuCount = cpus().length): Topology {
  if (layout === 'shared' || cpuCount < 2)
    return {
      layout: 'shared',
      cpus: cpuCount,
      postgres: null,
      redis: null,
      api: null,
      flusher: null,
      loadGenerator: null,
      servers: 'shared',
    };
  const all = Array.from({ length: cpuCount }, (_, i) => i);
  // A quarter of the cores (at least one) for PostgreSQL and its neighbours, the rest for the api.
  const side = all.slice(0, Math.max(1, Math.floor(cpuCount / 4)));
  const api = all.slice(side.length);
  const others = layout === 'split' ? side : api;
  return {
    layout,
    cpus: cpuCount,
    postgres: side,
    redis: others,
    api,
    flusher: others,
    loadGenerator: others,
    servers: 'private',
  };
}

/** The command line that runs `command args` on the given cores (unchanged when not pinned). */
export function pinned(cores: number[] | null, command: string, args: string[]): [string, string[]] {
  return cores ? ['taskset', ['-c', cores.join(','), command, ...args]] : [command, args];
}

export function describeTopology(t: Topology): string {
  if (t.layout === 'shared') return `shared: nothing pinned, shared PostgreSQL and Redis, ${t.cpus} cores`;
  const c = (x: number[] | null) => (x ? `core ${x.join(',')}` : 'any core');
  return `${t.layout}: PostgreSQL ${c(t.postgres)}, Redis ${c(t.redis)}, flusher ${c(t.flusher)}, load generator + lookup probe ${c(t.loadGenerator)}, api ${c(t.api)}`;
}
