import type { Pool, PoolClient } from 'pg';
import { inTransaction, statementName } from './db';
import type { Verdict, VerdictSource } from './store';

type Queryable = Pick<Pool, 'query'> | PoolClient;

export interface SignerEvaluationInput {
  /** Lower-case hex SHA-256, the same text form as packages.signature. */
  signature: string;
  verdict: Verdict;
  source: VerdictSource;
  threatIndex: number;
}

/** A signing certificate's current verdict as PostgreSQL keeps it (migration 005). */
export interface StoredSigner {
  signature: string;
  verdict: Verdict;
  source: VerdictSource;
  threatIndex: number;
  rev: number;
}

interface SignerRowDb {
  signature: string;
  verdict: Verdict;
  source: VerdictSource;
  threat_index: number;
  rev: string;
}

function toSigner(r: SignerRowDb): StoredSigner {
  return {
    signature: r.signature,
    verdict: r.verdict,
    source: r.source,
    threatIndex: r.threat_index,
    rev: Number(r.rev),
  };
}

/**
 * The signers among `signatures` that have a verdict; one query for any number. A signature
 * with no row has no verdict (the caller caches that too, with rev 0).
 */
export async function lookupSigners(
  db: Queryable,
  pool: Pool,
  signatures: readonly string[],
): Promise<Map<string, StoredSigner>> {
  const found = new Map<string, StoredSigner>();
  if (signatures.length === 0) return found;
  const { rows } = await db.query<SignerRowDb>({
    name: statementName(pool, 'safepkg-lookup-signers'),
    text: `SELECT s.signature, s.verdict, s.source, s.threat_index, s.rev
      FROM signers s WHERE s.signature = ANY($1::text[])`,
    values: [signatures],
  });
  for (const r of rows) found.set(r.signature, toSigner(r));
  return found;
}

/**
 * Verdict history on signing certificates. The current verdict in `signers` is kept by the
 * statement-level trigger of migration 005; this module only appends (one statement per batch).
 */
export class SignerStore {
  constructor(private readonly pool: Pool) {}

  /**
   * Appends a batch in one transaction and returns the touched signers' resulting verdicts
   * (with the new `rev`) for the cache write-through, which the caller does after COMMIT.
   */
  async record(evaluations: readonly SignerEvaluationInput[], createdBy: string): Promise<StoredSigner[]> {
    if (evaluations.length === 0) return [];
    return inTransaction(this.pool, async (client) => {
      // In input order, so that of two evaluations of one source in a batch the later wins.
      await client.query(
        `INSERT INTO signer_evaluations (signature, source, verdict, threat_index, created_by)
       SELECT k.signature, k.source, k.verdict, k.threat_index, $5
         FROM unnest($1::text[], $2::verdict_source[], $3::verdict[], $4::real[])
              WITH ORDINALITY AS k(signature, source, verdict, threat_index, ord)
        ORDER BY k.ord`,
        [
          evaluations.map((e) => e.signature),
          evaluations.map((e) => e.source),
          evaluations.map((e) => e.verdict),
          evaluations.map((e) => e.threatIndex),
          createdBy,
        ],
      );
      const rows = await lookupSigners(client, this.pool, [...new Set(evaluations.map((e) => e.signature))]);
      return [...rows.values()];
    });
  }
}
