import { packageKey, type PackageRef } from '@safepkg/core';
import { pkg, storedPackages } from '@safepkg/testkit';
import type { Pool } from 'pg';

export interface CheckResult extends PackageRef {
  known: boolean;
  pending: boolean;
  status: string;
}

export async function check(apiUrl: string, packages: PackageRef[]): Promise<CheckResult[]> {
  const res = await fetch(`${apiUrl}/v1/packages/check`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ packages }),
  });
  if (res.status !== 200) throw new Error(`check answered ${res.status}: ${await res.text()}`);
  return ((await res.json()) as { results: CheckResult[] }).results;
}

/**
 * Deterministic check bodies with heavy repetition across requests (30 % from a hot head
 * of 200 packages) and one duplicate inside every request.
 */
export function generateRequests(opts: {
  requests: number;
  perRequest: number;
  distinct: number;
  namespace: string;
}) {
  let seed = 42;
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const requests: PackageRef[][] = [];
  for (let r = 0; r < opts.requests; r++) {
    const body: PackageRef[] = [];
    for (let i = 0; i < opts.perRequest - 1; i++) {
      const hot = rand() < 0.3;
      body.push(pkg(hot ? Math.floor(rand() * 200) : Math.floor(rand() * opts.distinct), opts.namespace));
    }
    body.push(body[0] as PackageRef);
    requests.push(body);
  }
  const distinct = new Map<string, PackageRef>();
  for (const body of requests) for (const p of body) distinct.set(packageKey(p), p);
  return { requests, distinct };
}

/**
 * Sends every request from `clients` concurrent clients; checks each answer keeps the
 * request's order and marks every package known or pending. Returns the packages answered.
 */
export async function sendConcurrently(
  apiUrl: string,
  requests: PackageRef[][],
  clients: number,
): Promise<number> {
  let next = 0;
  let answered = 0;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (next < requests.length) {
        const body = requests[next++] as PackageRef[];
        const results = await check(apiUrl, body);
        const order = results.map((r) => packageKey(r)).join();
        if (order !== body.map((p) => packageKey(p)).join())
          throw new Error('answer is not in request order');
        const lost = results.filter((r) => !r.known && !r.pending);
        if (lost.length > 0)
          throw new Error(`answered neither known nor pending: ${packageKey(lost[0] as PackageRef)}`);
        answered += results.length;
      }
    }),
  );
  return answered;
}

export async function countPackages(pool: Pool): Promise<number> {
  const { rows } = await pool.query<{ n: string }>('SELECT count(*) AS n FROM packages');
  return Number(rows[0]?.n);
}

/** The stored set, and the analysis queue's count, distinct count and rows with no package. */
export async function storedState(pool: Pool) {
  const { storedKeys, queued, queuedDistinct, queueOrphans } = await storedPackages(pool);
  return { storedKeys, queued, queuedDistinct, orphans: queueOrphans };
}
