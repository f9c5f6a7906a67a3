-- Verdicts on signing certificates: append-only history in `signer_evaluations`, the current
-- verdict per signature in `signers`, kept by a statement-level trigger exactly as 003 keeps
-- `packages`: manual outranks model, a later one of the same source replaces the earlier,
-- `rev` increases on every change (the signer cache entry's staleness guard). A signer verdict
-- does not touch `packages` or the analysis queue: the package's own verdict outranks it
-- (README "Decisions"), so the package is still analysed.
CREATE TABLE signer_evaluations (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  signature     text           NOT NULL CHECK (signature ~ '^[0-9a-f]{64}$'),
  source        verdict_source NOT NULL,
  verdict       verdict        NOT NULL,
  threat_index  real           NOT NULL CHECK (threat_index BETWEEN 0 AND 1),
  created_at    timestamptz    NOT NULL DEFAULT now(),
  created_by    text           NOT NULL
);

CREATE INDEX signer_evaluations_signature ON signer_evaluations (signature, id);

CREATE TABLE signers (
  signature     text           PRIMARY KEY,
  verdict       verdict        NOT NULL,
  source        verdict_source NOT NULL,
  threat_index  real           NOT NULL CHECK (threat_index BETWEEN 0 AND 1),
  rev           bigint         NOT NULL,
  updated_at    timestamptz    NOT NULL
);

-- The one place a signer's current verdict changes: anything that must follow such a change
-- (a change feed row) belongs in this function, next to the upsert.
CREATE FUNCTION signer_evaluations_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  WITH latest AS (
    -- Per signature, the evaluation of this statement that wins: manual over model, then newest.
    -- In signature order, so concurrent batches lock the signer rows in one order (no 40P01).
    SELECT DISTINCT ON (signature) signature, source, verdict, threat_index
      FROM new_signer_evaluations
     ORDER BY signature, (source = 'manual') DESC, id DESC
  )
  INSERT INTO signers AS s (signature, verdict, source, threat_index, rev, updated_at)
  SELECT signature, verdict, source, threat_index, 1, now() FROM latest
  ON CONFLICT (signature) DO UPDATE
     SET verdict = excluded.verdict, source = excluded.source, threat_index = excluded.threat_index,
         rev = s.rev + 1, updated_at = excluded.updated_at
   WHERE excluded.source = 'manual' OR s.source = 'model';
  RETURN NULL;
END
$$;

CREATE TRIGGER signer_evaluations_apply
  AFTER INSERT ON signer_evaluations
  REFERENCING NEW TABLE AS new_signer_evaluations
  FOR EACH STATEMENT EXECUTE FUNCTION signer_evaluations_apply();
