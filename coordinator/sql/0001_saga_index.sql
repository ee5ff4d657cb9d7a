-- saga_index: one row per saga, written by the coordinator in the same
-- transaction as the saga's events (a derived table: it can be rebuilt from
-- the events). sagactl and the admin endpoint read it; recovery lists the
-- non-terminal sagas of a partition from it.
CREATE TABLE IF NOT EXISTS saga_index (
  saga_id text PRIMARY KEY,
  saga_type text NOT NULL,
  definition_version int NOT NULL,
  status text NOT NULL,
  partition int NOT NULL,
  version bigint NOT NULL,
  started_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  next_deadline_at timestamptz,
  current_step text);
CREATE INDEX IF NOT EXISTS saga_index_open_idx ON saga_index (partition)
  WHERE status NOT IN ('completed', 'compensated');
CREATE INDEX IF NOT EXISTS saga_index_status_idx
  ON saga_index (status, updated_at);
