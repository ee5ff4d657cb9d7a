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
-- the same page) when the page has room: no index covers updated_at, and
-- inserts fill a page to half only. A saga's row is written up to five
-- times within a second or so (its start, its steps, its end, the flag of
-- its delivered notification), faster than a vacuum makes room. In the
-- saga benchmark 28% of the updates were HOT at 70%, 47% at 50% (nearly
-- all that can be: the end and the flag's clear change indexed columns),
-- each upsert's row cost about a fifth less, and sagas/s rose 11% and
-- 17% (docs/benchmarks.md, "Room on saga_index's pages"). The price is
-- about 220 bytes of heap per saga instead of 160, until the saga is
-- archived. A changed fillfactor applies to the pages filled after it.
-- The listing by status pages through saga ids (admin_pg.c).
ALTER TABLE saga_index SET (fillfactor = 50);
DROP INDEX IF EXISTS saga_index_status_idx;
CREATE INDEX IF NOT EXISTS saga_index_status_id_idx
  ON saga_index (status, saga_id);
