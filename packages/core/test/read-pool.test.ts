import {
  createLogger,
  configDefaults,
  PackageStore,
  ReadPool,
  VerdictLsn,
  type LookupReason,
} from '@safepkg/core';
import { pkgs, useTestContext, waitFor } from '@safepkg/testkit';
import { Pool } from 'pg';

// Without a standby here: what the pool does with read URLs that are not usable replicas.
// Routing to a real paused, lagging and killed replica is e2e/test/read-replicas.test.ts.
const ctx = useTestContext();

function readPool(replicaPool: Pool) {
  const routes: [string, LookupReason][] = [];
  const primary = new PackageStore(ctx.db.pool);
  const reads = new ReadPool({
    primary,
    replicas: [{ name: 'r', pool: replicaPool, store: new PackageStore(replicaPool) }],
    verdictLsn: new VerdictLsn(ctx.redis, ctx.keys),
    maxLagMs: 1000,
    pollIntervalMs: 20,
    logger: createLogger({ ...configDefaults(), logLevel: 'silent' }, 'test'),
    observer: { lookup: (target, reason) => routes.push([target, reason]) },
  });
  return { reads, routes, primary };
}

test('a read URL that points at a primary (not a standby) is never used for lookups', async () => {
  const refs = pkgs(0, 5, 'readpoolprimary');
  await new PackageStore(ctx.db.pool).insertBatch(refs.map((ref) => ({ ref, firstSeenAt: new Date() })));
  const { reads, routes } = readPool(ctx.db.pool);
  reads.start();
  try {
    // The poll answered (the verdict LSN got seeded from the primary) but found no standby.
    await waitFor(async () => (await new VerdictLsn(ctx.redis, ctx.keys).read()) !== null, {
      what: 'a poll',
    });
    expect(reads.replicaStates()).toEqual([
      { name: 'r', up: false, lagging: false, lagMs: null, replayLsn: null },
    ]);
    expect((await reads.lookupMany(refs)).size).toBe(5);
    expect(routes).toEqual([['primary', 'replicas_unhealthy']]);
  } finally {
    reads.stop();
  }
});

test('an unreachable read URL is marked down and every lookup is answered by the primary', async () => {
  const refs = pkgs(0, 3, 'readpooldown');
  await new PackageStore(ctx.db.pool).insertBatch(refs.map((ref) => ({ ref, firstSeenAt: new Date() })));
  // A closed port: connecting fails at once.
  const dead = new Pool({
    connectionString: 'postgres://postgres@127.0.0.1:1/safepkg',
    connectionTimeoutMillis: 500,
  });
  dead.on('error', () => undefined);
  await ctx.redis.del(ctx.keys.verdictLsn());
  const { reads, routes } = readPool(dead);
  reads.start();
  try {
    // A poll ran (it also seeds the verdict LSN from the primary, which answers).
    await waitFor(async () => (await new VerdictLsn(ctx.redis, ctx.keys).read()) !== null, {
      what: 'a poll',
    });
    expect(reads.replicaStates()[0]).toMatchObject({ up: false });
    const found = await reads.lookupMany(refs, { confirmMisses: true });
    expect(found.size).toBe(3);
    expect(routes).toEqual([['primary', 'replicas_unhealthy']]);
  } finally {
    await reads.close();
  }
});
