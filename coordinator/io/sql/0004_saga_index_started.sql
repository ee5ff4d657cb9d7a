-- The operators' list (sagactl list, GET /sagas: index/index_query.c)
-- orders by (started_at, saga_id), newest first by default, and pages by
-- that pair, so a page is an index range instead of a sort of the table.
-- started_at is written once, when the saga's row is inserted, and never
-- updated: the row's updates stay HOT (no indexed column changes). One
-- more index entry per started saga, on the right-most leaf (start times
-- grow).
CREATE INDEX IF NOT EXISTS saga_index_started_idx
  ON saga_index (started_at, saga_id);
