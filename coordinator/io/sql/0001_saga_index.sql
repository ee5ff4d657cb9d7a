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
-- The row is rewritten at every transition. While the status stays the
-- same those updates are HOT (no index entry written, the new version on
-- the same page): no index covers updated_at, and each page keeps room.
-- The listing by status pages through saga ids (admin_pg.c).
ALTER TABLE saga_index SET (fillfactor = 70);
DROP INDEX IF EXISTS saga_index_status_idx;
CREATE INDEX IF NOT EXISTS saga_index_status_id_idx
  ON saga_index (status, saga_id);
