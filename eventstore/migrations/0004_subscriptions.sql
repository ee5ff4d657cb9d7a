-- Persistent subscriptions and consumer groups (docs/eventstore.md,
-- "Named subscriptions and consumer groups").
--
-- Every event carries its stream's bucket, one of 64, from a hash of the
-- stream id computed once when the row is written (a stored generated
-- column), and an index leads with (category, bucket), so a consumer
-- group member reads its buckets by index ranges instead of hashing every
-- row it passes over. A stream's events all share one bucket, so one
-- member handles them all, in order.
ALTER TABLE es_events ADD COLUMN bucket smallint
  GENERATED ALWAYS AS ((hashtextextended(stream_id, 0) & 63)::smallint)
  STORED;
-- The tables waiting ready for their era get the column too (they are
-- attached when their era starts and must match).
DO $$
DECLARE
  t text;
BEGIN
  FOR t IN SELECT table_name FROM es_partitions WHERE started_at IS NULL LOOP
    EXECUTE format('ALTER TABLE %I ADD COLUMN bucket smallint GENERATED'
                   ' ALWAYS AS ((hashtextextended(stream_id, 0) & 63)'
                   '::smallint) STORED', t);
  END LOOP;
END
$$;
CREATE INDEX es_events_bucket_idx
  ON es_events (category, bucket, tx_id, global_position);

-- Checkpoints, advanced by the subscriber (in the same transaction as its
-- own writes when they go to this database): one row per named
-- subscription (bucket -1: the whole global order) or per bucket of a
-- consumer group. A checkpoint only moves forward.
CREATE TABLE es_subscriptions (
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
  bucket smallint NOT NULL CHECK (bucket BETWEEN -1 AND 63),
  tx_id xid8 NOT NULL,
  global_position bigint NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (name, bucket)
);
-- DELETE: a reset forgets a subscription's checkpoints (to rebuild what
-- it derives from the start); the events themselves stay untouchable.
GRANT SELECT, INSERT, UPDATE, DELETE ON es_subscriptions TO es_writer;
