-- Every package ever seen, with its current status maintained from `evaluations`
-- (see 002). The covering unique index makes a lookup one index-only probe; the flush
-- path writes this table and its two indexes (the key and the sequential id), no triggers.
CREATE TYPE verdict AS ENUM ('safe', 'malicious', 'suspicious');
CREATE TYPE verdict_source AS ENUM ('manual', 'model');

CREATE TABLE packages (
  id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name           text        NOT NULL,
  version_code   bigint      NOT NULL,
  signature      text        NOT NULL,
  first_seen_at  timestamptz NOT NULL,
  verdict        verdict,
  threat_index   real,
  source         verdict_source,
  rev            integer     NOT NULL DEFAULT 0,
  -- The API validates the same rules; these keep a row that bypassed it (a poison
  -- entry written straight into Redis) out of the table, and send it to dead letters.
  CONSTRAINT packages_name_valid CHECK (
    char_length(name) <= 255 AND name ~ '^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+$'
  ),
  CONSTRAINT packages_version_code_valid CHECK (version_code BETWEEN 0 AND 9007199254740991),
  CONSTRAINT packages_signature_valid CHECK (signature ~ '^[0-9a-f]{64}$'),
  CONSTRAINT packages_threat_index_valid CHECK (threat_index BETWEEN 0 AND 1),
  CONSTRAINT packages_status_complete CHECK ((verdict IS NULL) = (source IS NULL) AND (verdict IS NULL) = (threat_index IS NULL))
);

CREATE UNIQUE INDEX packages_key ON packages (name, version_code, signature)
  INCLUDE (id, first_seen_at, verdict, threat_index, source, rev);
