-- Packages waiting for analysis. Filled in the flush transaction from
-- `INSERT … ON CONFLICT DO NOTHING RETURNING id`, so only really new packages enter, once.
-- No foreign key: every row is created from a RETURNING id in the same statement, and a
-- per-row FK probe would be the flush's most expensive part.
CREATE TABLE analysis_queue (
  package_id     bigint      PRIMARY KEY,
  enqueued_at    timestamptz NOT NULL DEFAULT now(),
  claimed_until  timestamptz,
  attempts       integer     NOT NULL DEFAULT 0
);

CREATE INDEX analysis_queue_claimable ON analysis_queue (enqueued_at, package_id);
