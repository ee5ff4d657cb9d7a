-- saga_definitions: every definition version a sagad of this deployment
-- loaded, as it loaded it: the canonical JSON body (members sorted by key,
-- no whitespace: core/definition.h) and its SHA-256 in hex. sagad inserts
-- its definitions at start and refuses to start when a version is already
-- recorded with another body: a (name, version) names one body for good,
-- so a saga's history always replays against the definition it ran on.
-- sagactl (history, describe, replay) and the admin API read a saga's
-- definition from here; --definitions becomes optional. Not derived from
-- the events: never rewritten, only added to.
CREATE TABLE IF NOT EXISTS saga_definitions (
  name text NOT NULL,
  version int NOT NULL,
  body text NOT NULL,
  sha256 text NOT NULL,
  source text NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (name, version));
