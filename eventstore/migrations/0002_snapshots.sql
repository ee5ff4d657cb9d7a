-- Snapshots: derived, one row per stream (the latest), may be rewritten.
CREATE TABLE es_snapshots (
  stream_id text PRIMARY KEY,
  version bigint NOT NULL CHECK (version > 0),
  snapshot_type text NOT NULL,
  data bytea NOT NULL,
  taken_at timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT, UPDATE ON es_snapshots TO es_writer;
