-- Prevalence: how many check requests answered 200 carried each package, and when the
-- latest one did. The api never writes these on the request path (unless Redis is down):
-- checks add to per-partition delta hashes in Redis and the flusher applies them in its
-- existing round transactions, exactly once through the ledger below.
--
-- Backfill: every existing row was reported at least once (or entered by an evaluation,
-- which cannot be told apart now), so reports = 1 and last_seen_at = first_seen_at.
-- ADD COLUMN with a constant default is a catalog-only change in PostgreSQL 11+; the
-- UPDATE of last_seen_at rewrites each row once.
-- reports_set: the random tag of the delta set whose count a flush wrote into the row when it
-- inserted it (NULL when inserted without one). The set's later UPDATE skips rows carrying its
-- tag, so a new package is written once, not inserted and then updated (which rewrote every new
-- row with its index entries and cut the drain's rows/s by more than half).
ALTER TABLE packages
  ADD COLUMN reports bigint NOT NULL DEFAULT 1,
  ADD COLUMN last_seen_at timestamptz,
  ADD COLUMN reports_set bigint;
UPDATE packages SET last_seen_at = first_seen_at;
-- From now on a row starts at 0: its reports arrive as deltas (usually in the same flush).
ALTER TABLE packages ALTER COLUMN reports SET DEFAULT 0;
ALTER TABLE packages ADD CONSTRAINT packages_reports_valid CHECK (reports >= 0);

-- The report ledger: per buffer partition and Redis epoch, the highest flush id whose deltas
-- were applied. The flush transaction upserts (partition, epoch, flush id) with
-- `WHERE flush_id < new id` RETURNING, and applies the increments only when a row came back:
-- a delta set re-flushed after a crash, or by a second flusher, is applied once. Flush ids only
-- grow per partition, so a high-water mark holds the same knowledge as one row per flush, in
-- constant space, and also refuses an older set that a Redis restart from AOF brought back.
-- The epoch is a random token stored beside the partition's flush-id counter: a Redis that
-- comes back empty (or a new KEY_PREFIX) starts a new epoch, so its ids, which restart at 1,
-- are never mistaken for sets already applied.
CREATE TABLE report_flushes (
  partition   integer     NOT NULL,
  epoch       text        NOT NULL,
  flush_id    bigint      NOT NULL,
  flushed_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (partition, epoch)
);
