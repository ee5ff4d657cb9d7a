-- Appends go through es_append, a view whose rule derives category and
-- bucket from the stream id (docs/internals/eventstore.md, "Appends through
-- es_append"). As stored generated columns of the partitioned es_events
-- the two cost more than the rest of a one-row insert's set-up: PostgreSQL
-- 15 reads each generation expression back from its text and plans it at
-- every execution, for the parent and again for the partition the row goes
-- to (four expressions per statement, a third of a one-event append's
-- backend instructions). The rule is applied when a statement is prepared,
-- so an execution pays only the two functions.
--
-- The writer role inserts into es_append and no longer into es_events, so
-- the two columns are the database's as before; the columns a writer may
-- give are the rest (position, transaction id and time are es_events'
-- defaults, the era the current one unless given). Rows already stored
-- keep their values: dropping the expressions rewrites nothing.
ALTER TABLE es_events ALTER COLUMN category DROP EXPRESSION,
                      ALTER COLUMN bucket DROP EXPRESSION;
-- The tables waiting for their era are attached when it starts and must
-- match.
DO $$
DECLARE
  t text;
BEGIN
  FOR t IN SELECT p.table_name FROM es_partitions p
           WHERE p.started_at IS NULL
             AND to_regclass(quote_ident(p.table_name)) IS NOT NULL LOOP
    EXECUTE format('ALTER TABLE %I ALTER COLUMN category DROP EXPRESSION'
                   ' IF EXISTS, ALTER COLUMN bucket DROP EXPRESSION'
                   ' IF EXISTS', t);
  END LOOP;
END
$$;

-- es_events' columns, in its order; it shows no rows (reads go to
-- es_events).
CREATE VIEW es_append AS
  SELECT global_position, tx_id, stream_id, stream_version, category,
         event_id, event_type, data, correlation_id, causation_id,
         traceparent, metadata, recorded_at, era, bucket
  FROM es_events WHERE false;
ALTER VIEW es_append ALTER COLUMN era SET DEFAULT es_current_era();

-- The split and the hash are the expressions the columns had (migrations
-- 0001 and 0004), so a stream keeps its category and its bucket.
CREATE RULE es_append_insert AS ON INSERT TO es_append DO INSTEAD
  INSERT INTO es_events (stream_id, stream_version, category, event_id,
                         event_type, data, correlation_id, causation_id,
                         traceparent, metadata, era, bucket)
  VALUES (NEW.stream_id, NEW.stream_version,
          split_part(NEW.stream_id, '-', 1), NEW.event_id, NEW.event_type,
          NEW.data, NEW.correlation_id, NEW.causation_id, NEW.traceparent,
          NEW.metadata, NEW.era,
          (hashtextextended(NEW.stream_id, 0) & 63)::smallint)
  RETURNING es_events.global_position, es_events.tx_id,
            es_events.stream_id, es_events.stream_version,
            es_events.category, es_events.event_id, es_events.event_type,
            es_events.data, es_events.correlation_id,
            es_events.causation_id, es_events.traceparent,
            es_events.metadata, es_events.recorded_at, es_events.era,
            es_events.bucket;

REVOKE ALL ON es_append FROM PUBLIC;
REVOKE INSERT ON es_events FROM es_writer;
GRANT SELECT ON es_append TO es_writer;
GRANT INSERT (stream_id, stream_version, event_id, event_type, data,
              correlation_id, causation_id, traceparent, metadata, era)
  ON es_append TO es_writer;
