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
-- transactions writing changes serialise from their first change row to their commit. The two
-- evaluation triggers below take the lock earlier, before they read the state they compare, so
-- every evaluation batch (package or signer) serialises from its trigger to its commit; lookups,
-- flushes and sweeps never touch this lock.
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

-- Whose verdict answers a package, from the sources of its own and its signer's current
-- verdicts: the package's manual verdict, the signer's manual, the package's model, the signer's
-- model (the check path's withSigner() in apps/api/src/check-service.ts is the same rule).
-- NULL: nothing answers it (unknown).
CREATE FUNCTION answered_basis(package_source verdict_source, signer_source verdict_source)
RETURNS verdict_change_kind LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE
    WHEN package_source = 'manual' THEN 'package'
    WHEN signer_source = 'manual' THEN 'signer'
    WHEN package_source = 'model' THEN 'package'
    WHEN signer_source = 'model' THEN 'signer'
  END::verdict_change_kind
$$;

-- 003's function again, with the change detection added. Unchanged behaviour otherwise: manual
-- over model, a later verdict of a source replaces the earlier, rev + 1 on every evaluation.
CREATE OR REPLACE FUNCTION evaluations_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- Lock the packages first, in id order (as EvaluationStore.record does, so this is a re-lock
  -- there): nobody changes their status before we commit, so "before" below is exact even for a
  -- writer that did not lock them itself.
  PERFORM 1 FROM packages p
    WHERE p.id IN (SELECT package_id FROM new_evaluations)
    ORDER BY p.id FOR UPDATE OF p;
  -- Then the feed's lock (the one verdict_changes_order() takes), before reading the signers: a
  -- signer evaluation holds it from before its read to its commit, so the next statement's
  -- snapshot holds every signer verdict committed ahead of this transaction in feed order, and
  -- the answers recorded below are the ones a follower replaying the feed in order must see.
  PERFORM pg_advisory_xact_lock(7231994006);

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
  ), answers AS (
    -- ── The change detection: the one place that decides what the feed records. ──
    -- The package's ANSWERED status before and after: its own verdict combined with its
    -- signer's (answered_basis), so a model verdict under a signer's manual one records nothing.
    SELECT a.id, a.signature, ab.basis,
           CASE ab.basis WHEN 'package' THEN a.verdict ELSE s.verdict END AS status,
           CASE ab.basis WHEN 'package' THEN a.source ELSE s.source END AS source,
           CASE ab.basis WHEN 'package' THEN a.threat_index ELSE s.threat_index END AS threat_index,
           bb.basis AS was_basis,
           CASE bb.basis WHEN 'package' THEN b.verdict WHEN 'signer' THEN s.verdict END AS was_status,
           CASE bb.basis WHEN 'package' THEN b.source WHEN 'signer' THEN s.source END AS was_source,
           CASE bb.basis WHEN 'package' THEN b.threat_index WHEN 'signer' THEN s.threat_index END
             AS was_threat_index
      FROM applied a
      JOIN before b ON b.id = a.id
      LEFT JOIN signers s ON s.signature = a.signature
      CROSS JOIN LATERAL (SELECT answered_basis(a.source, s.source) AS basis) ab
      CROSS JOIN LATERAL (SELECT answered_basis(b.source, s.source) AS basis) bb
  )
  INSERT INTO verdict_changes (kind, package_id, signature, status, source, basis, threat_index)
  SELECT 'package', x.id, x.signature, x.status, x.source, x.basis, x.threat_index
    FROM answers x
   WHERE (x.status, x.source, x.threat_index, x.basis)
         IS DISTINCT FROM (x.was_status, x.was_source, x.was_threat_index, x.was_basis)
   ORDER BY x.id;

  DELETE FROM analysis_queue q USING new_evaluations n WHERE q.package_id = n.package_id;
  RETURN NULL;
END
$$;

-- 005's function again, recording each change of a signer's current verdict as one 'signer'
-- row (the signature; a follower resolves the packages it signs). Unchanged behaviour otherwise.
CREATE OR REPLACE FUNCTION signer_evaluations_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- The feed's lock before reading `signers`: see evaluations_apply() above.
  PERFORM pg_advisory_xact_lock(7231994006);
  WITH latest AS (
    -- Per signature, the evaluation of this statement that wins: manual over model, then newest.
    -- In signature order, so concurrent batches lock the signer rows in one order (no 40P01).
    SELECT DISTINCT ON (signature) signature, source, verdict, threat_index
      FROM new_signer_evaluations
     ORDER BY signature, (source = 'manual') DESC, id DESC
  ), before AS (
    SELECT s.signature, s.verdict, s.source, s.threat_index
      FROM signers s JOIN latest l ON l.signature = s.signature
  ), applied AS (
    INSERT INTO signers AS s (signature, verdict, source, threat_index, rev, updated_at)
    SELECT signature, verdict, source, threat_index, 1, now() FROM latest
    ON CONFLICT (signature) DO UPDATE
       SET verdict = excluded.verdict, source = excluded.source, threat_index = excluded.threat_index,
           rev = s.rev + 1, updated_at = excluded.updated_at
     WHERE excluded.source = 'manual' OR s.source = 'model'
    RETURNING s.signature, s.verdict, s.source, s.threat_index
  )
  INSERT INTO verdict_changes (kind, package_id, signature, status, source, basis, threat_index)
  SELECT 'signer', NULL, a.signature, a.verdict, a.source, 'signer', a.threat_index
    FROM applied a LEFT JOIN before b ON b.signature = a.signature
   WHERE (a.verdict, a.source, a.threat_index) IS DISTINCT FROM (b.verdict, b.source, b.threat_index)
   ORDER BY a.signature;
  RETURN NULL;
END
$$;
