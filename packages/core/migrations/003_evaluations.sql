-- Append-only verdict history. The current status on `packages` is derived from it by a
-- statement-level trigger with a transition table: one set-based UPDATE per batch of
-- evaluations. A manual verdict outranks a model verdict; a later one of the same source
-- replaces the earlier; `rev` increases on every change (the cache's staleness guard).
CREATE TABLE evaluations (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  package_id    bigint         NOT NULL REFERENCES packages (id),
  source        verdict_source NOT NULL,
  verdict       verdict        NOT NULL,
  threat_index  real           NOT NULL CHECK (threat_index BETWEEN 0 AND 1),
  created_at    timestamptz    NOT NULL DEFAULT now(),
  created_by    text           NOT NULL
);

CREATE INDEX evaluations_package ON evaluations (package_id, id);

CREATE FUNCTION evaluations_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  WITH latest AS (
    -- Per package, the evaluation of this statement that wins: manual over model, then newest.
    SELECT DISTINCT ON (package_id) package_id, source, verdict, threat_index
    FROM new_evaluations
    ORDER BY package_id, (source = 'manual') DESC, id DESC
  )
  UPDATE packages p
     SET verdict = l.verdict, threat_index = l.threat_index, source = l.source, rev = p.rev + 1
    FROM latest l
   WHERE p.id = l.package_id
     AND (l.source = 'manual' OR p.source IS DISTINCT FROM 'manual');

  DELETE FROM analysis_queue q USING new_evaluations n WHERE q.package_id = n.package_id;
  RETURN NULL;
END
$$;

CREATE TRIGGER evaluations_apply
  AFTER INSERT ON evaluations
  REFERENCING NEW TABLE AS new_evaluations
  FOR EACH STATEMENT EXECUTE FUNCTION evaluations_apply();
