import type { Pool } from 'pg';
import { SafepkgError, ValidationError } from './errors';
import type { Verdict, VerdictSource } from './store';

/** One change of an answered status, as the feed hands it out. */
export interface VerdictChange {
  /** A package's answer changed, or a signer's verdict did (then name and versionCode are null). */
  kind: 'package' | 'signer';
  name: string | null;
  versionCode: number | null;
  signature: string;
  status: Verdict;
  source: VerdictSource;
  basis: 'package' | 'signer';
  threatIndex: number;
  changedAt: Date;
}

export interface VerdictChangePage {
  changes: VerdictChange[];
  /** Where the next read starts: pass it back as `after`, whether or not this page was empty. */
  next: string;
}

export const FEED_LIMIT_MAX = 1000;
export const FEED_LIMIT_DEFAULT = 100;

/** The cursor is older than the oldest change kept: the follower has missed changes (HTTP 410). */
export class CursorExpiredError extends SafepkgError {
  /** A cursor to resume from the oldest change kept, after the follower has resynchronised. */
  readonly oldest: string;
  constructor(oldest: string) {
    super(
      'cursor_expired',
      'changes after this cursor were deleted by retention (FEED_RETENTION_DAYS); resynchronise, then follow from `oldest`',
    );
    this.oldest = oldest;
  }
}

// Opaque to followers: a version tag and the last id seen, base64url. The tag lets the format
// change later without old cursors being misread as new ones.
const CURSOR_TAG = 'vc1:';
const CURSOR_SHAPE = /^[A-Za-z0-9_-]{1,40}$/;

export function encodeFeedCursor(id: bigint): string {
  return Buffer.from(`${CURSOR_TAG}${id}`).toString('base64url');
}

/** The id in a cursor, or null when it is not one this feed issued. */
export function decodeFeedCursor(cursor: string): bigint | null {
  if (!CURSOR_SHAPE.test(cursor)) return null;
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  const m = /^vc1:(0|[1-9][0-9]{0,18})$/.exec(text);
  if (!m) return null;
  const id = BigInt(m[1] as string);
  // bigint range of PostgreSQL; re-encoding must give the same string (no alternative spellings).
  if (id > 9223372036854775807n || encodeFeedCursor(id) !== cursor) return null;
  return id;
}

/** Parses the query of a feed read, listing every bad field at once. */
export function parseFeedQuery(query: Record<string, unknown>): { after: bigint | null; limit: number } {
  const details: { path: string; message: string }[] = [];
  let after: bigint | null = null;
  let limit = FEED_LIMIT_DEFAULT;
  for (const key of Object.keys(query)) {
    if (key !== 'after' && key !== 'limit') details.push({ path: key, message: 'unknown parameter' });
  }
  if (query.after !== undefined) {
    const id = typeof query.after === 'string' ? decodeFeedCursor(query.after) : null;
    if (id === null) details.push({ path: 'after', message: 'must be a cursor returned as `next`' });
    else after = id;
  }
  if (query.limit !== undefined) {
    const text = typeof query.limit === 'string' ? query.limit : '';
    const n = /^[0-9]{1,4}$/.test(text) ? Number(text) : NaN;
    if (!(n >= 1 && n <= FEED_LIMIT_MAX))
      details.push({ path: 'limit', message: `must be an integer from 1 to ${FEED_LIMIT_MAX}` });
    else limit = n;
  }
  if (details.length > 0) throw new ValidationError(details);
  return { after, limit };
}

interface ChangeRow {
  pruned_to: string;
  id: string | null;
  kind: 'package' | 'signer';
  name: string | null;
  version_code: string | null;
  signature: string;
  status: Verdict;
  source: VerdictSource;
  basis: 'package' | 'signer';
  threat_index: number;
  changed_at: Date;
}

/**
 * The verdict change feed (migration 006). Ids are handed out in commit order by the table's
 * trigger, so a page is simply the rows after the cursor's id: a row committing later always has
 * a higher id than every row already visible. Read from the primary (a replica's snapshot is
 * also consistent, but may lag behind what a device was just told).
 */
export class VerdictFeed {
  constructor(private readonly pool: Pool) {}

  /** Up to `limit` changes after the cursor (from the oldest kept when `after` is null). */
  async read(after: bigint | null, limit: number): Promise<VerdictChangePage> {
    // One statement, so the retention watermark and the rows come from the same snapshot.
    const { rows } = await this.pool.query<ChangeRow>(
      `SELECT s.pruned_to, c.id, c.kind, p.name, p.version_code, c.signature, c.status, c.source,
              c.basis, c.threat_index, c.changed_at
         FROM verdict_feed_state s
         LEFT JOIN LATERAL (
           SELECT * FROM verdict_changes c
            WHERE c.id > greatest($1::bigint, s.pruned_to)
            ORDER BY c.id LIMIT $2
         ) c ON true
         LEFT JOIN packages p ON p.id = c.package_id
        ORDER BY c.id`,
      [String(after ?? 0n), limit],
    );
    const prunedTo = BigInt(rows[0]?.pruned_to ?? '0');
    if (after !== null && after < prunedTo) throw new CursorExpiredError(encodeFeedCursor(prunedTo));
    const changes: VerdictChange[] = [];
    let last = after ?? prunedTo;
    for (const r of rows) {
      if (r.id === null) continue;
      last = BigInt(r.id);
      changes.push({
        kind: r.kind,
        name: r.name,
        versionCode: r.version_code === null ? null : Number(r.version_code),
        signature: r.signature,
        status: r.status,
        source: r.source,
        basis: r.basis,
        threatIndex: r.threat_index,
        changedAt: r.changed_at,
      });
    }
    return { changes, next: encodeFeedCursor(last) };
  }

  /**
   * Deletes the changes older than `retentionDays` and raises the watermark in the same
   * statement, so a follower's cursor into the deleted range is told so (410) instead of silently
   * resuming after a gap. Deletes a prefix of ids: every id up to the newest old-enough one.
   * Returns how many rows it deleted.
   */
  async prune(retentionDays: number): Promise<number> {
    const { rows } = await this.pool.query<{ deleted: string }>(
      `WITH cut AS (
         SELECT max(id) AS id FROM verdict_changes
          WHERE changed_at < now() - $1 * interval '1 day'
       ), gone AS (
         DELETE FROM verdict_changes WHERE id <= (SELECT id FROM cut) RETURNING id
       ), mark AS (
         UPDATE verdict_feed_state SET pruned_to = greatest(pruned_to, (SELECT id FROM cut))
          WHERE (SELECT id FROM cut) IS NOT NULL
       )
       SELECT count(*) AS deleted FROM gone`,
      [retentionDays],
    );
    return Number(rows[0]?.deleted ?? 0);
  }
}
