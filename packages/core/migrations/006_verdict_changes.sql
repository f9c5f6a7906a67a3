-- The verdict change feed: one row per change of a package's answered status (or of a signer's
-- verdict), read by followers with GET /v1/admin/verdict-changes. Writers only INSERT here,
-- inside their own transaction; the BEFORE ROW trigger below gives ids in COMMIT order, which is
-- what lets a follower page on `id > cursor` and never skip a row (README Decisions).
CREATE TYPE verdict_change_kind AS ENUM ('package', 'signer');

CREATE TABLE verdict_changes (
  -- Assigned by verdict_changes_order() only, never by the writer (no default on purpose).
  id            bigint              PRIMARY KEY,
  kind          verdict_change_kind NOT NULL,
  package_id    bigint              REFERENCES packages (id),
  signature     text                NOT NULL,
  status        verdict             NOT NULL,
  source        verdict_source      NOT NULL,
  -- Whose verdict the answer now rests on: the package's own, or its signer's.
  basis         verdict_change_kind NOT NULL,
  threat_index  real                NOT NULL,
  changed_at    timestamptz         NOT NULL,
  CONSTRAINT verdict_changes_package_kind CHECK ((kind = 'package') = (package_id IS NOT NULL)),
  CONSTRAINT verdict_changes_signer_basis CHECK (kind = 'package' OR basis = 'signer')
);

-- Retention prunes by age (a prefix of ids); the primary key serves the follower.
CREATE INDEX verdict_changes_changed_at ON verdict_changes (changed_at);

CREATE SEQUENCE verdict_changes_id_seq AS bigint OWNED BY verdict_changes.id;

-- The highest id retention has deleted: a cursor below it has missed changes (410 cursor_expired),
-- which the ids alone cannot tell (rolled-back transactions leave gaps too). One row, always.
CREATE TABLE verdict_feed_state (
  singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  pruned_to  bigint  NOT NULL DEFAULT 0
);
INSERT INTO verdict_feed_state DEFAULT VALUES;

-- Ids in commit order. A writer takes a transaction-scoped advisory lock (released at its COMMIT
-- or ROLLBACK, so it works behind a transaction-mode pooler) before its first change row gets an
-- id, and holds it to its end. So the writer holding id N has committed (and is visible to every
-- later snapshot) before any other writer can draw N+1: a reader that sees N+1 sees everything
-- below it, and `id > cursor` never passes over a row that commits later. The cost is that
-- transactions writing changes serialise from their first change row to their commit; only
-- evaluations that change an answer write one, lookups and flushes never touch this lock.
-- Re-taking the lock for each further row of the same transaction is a local lock-table hit.
CREATE FUNCTION verdict_changes_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- Any constant: every writer of the feed serialises on it (the migrator's is 7231994001).
  PERFORM pg_advisory_xact_lock(7231994006);
  NEW.id := nextval('verdict_changes_id_seq');
  -- The wall-clock time under the lock, so changed_at follows the id order (barring clock steps);
  -- now() would be the transaction's start, out of order with its commit.
  NEW.changed_at := clock_timestamp();
  RETURN NEW;
END
$$;

CREATE TRIGGER verdict_changes_order
  BEFORE INSERT ON verdict_changes
  FOR EACH ROW EXECUTE FUNCTION verdict_changes_order();

-- 003's function again, with the change detection added. Unchanged behaviour otherwise: manual
-- over model, a later verdict of a source replaces the earlier, rev + 1 on every evaluation.
CREATE OR REPLACE FUNCTION evaluations_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- Lock the packages first, in id order (as EvaluationStore.record does, so this is a re-lock
  -- there): the next statement then takes a new snapshot that holds their current status, and
  -- nobody changes it before we commit, so "before" below is exact even for a writer that did
  -- not lock them itself.
  PERFORM 1 FROM packages p
    WHERE p.id IN (SELECT package_id FROM new_evaluations)
    ORDER BY p.id FOR UPDATE OF p;

  WITH latest AS (
    -- Per package, the evaluation of this statement that wins: manual over model, then newest.
    SELECT DISTINCT ON (package_id) package_id, source, verdict, threat_index
    FROM new_evaluations
    ORDER BY package_id, (source = 'manual') DESC, id DESC
  ), before AS (
    SELECT p.id, p.verdict, p.source, p.threat_index
      FROM packages p JOIN latest l ON l.package_id = p.id
  ), applied AS (
    UPDATE packages p
       SET verdict = l.verdict, threat_index = l.threat_index, source = l.source, rev = p.rev + 1
      FROM latest l
     WHERE p.id = l.package_id
       AND (l.source = 'manual' OR p.source IS DISTINCT FROM 'manual')
    RETURNING p.id, p.signature, p.verdict, p.source, p.threat_index
  )
  -- ── The change detection: the one place that decides what the feed records. ──
  -- A row only where the package's ANSWERED status (verdict, source, threat index) differs from
  -- before. Today the answer is the package's own verdict, so the basis is always 'package'.
  -- With signer verdicts the answered status becomes the combination (package manual, signer
  -- manual, package model, signer model): compute it on both sides here from `before`/`applied`
  -- joined to the signer's row, and take `basis` from whichever verdict won.
  INSERT INTO verdict_changes (kind, package_id, signature, status, source, basis, threat_index)
  SELECT 'package', a.id, a.signature, a.verdict, a.source, 'package', a.threat_index
    FROM applied a JOIN before b ON b.id = a.id
   WHERE (a.verdict, a.source, a.threat_index) IS DISTINCT FROM (b.verdict, b.source, b.threat_index)
   ORDER BY a.id;

  DELETE FROM analysis_queue q USING new_evaluations n WHERE q.package_id = n.package_id;
  RETURN NULL;
END
$$;
