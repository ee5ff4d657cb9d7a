-- Events: append-only. Global order for readers is (tx_id, global_position):
-- tx_id is the writing transaction's id, so a reader that only reads
-- transactions older than its snapshot's xmin never skips a late commit
-- (docs/internals/eventstore.md).
CREATE TABLE es_events (
  global_position bigint GENERATED ALWAYS AS IDENTITY,
  tx_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
  stream_id text NOT NULL,
  stream_version bigint NOT NULL CHECK (stream_version > 0),
  category text GENERATED ALWAYS AS (split_part(stream_id, '-', 1)) STORED,
  event_id uuid NOT NULL,
  event_type text NOT NULL,
  data bytea NOT NULL,
  correlation_id text,
  causation_id text,
  traceparent text,
  metadata jsonb,
  recorded_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT es_events_pkey PRIMARY KEY (tx_id, global_position),
  CONSTRAINT es_events_stream_version_key UNIQUE (stream_id, stream_version),
  CONSTRAINT es_events_event_id_key UNIQUE (event_id)
);
-- Filtered global reads walk these in (tx_id, global_position) order.
CREATE INDEX es_events_category_idx
  ON es_events (category, tx_id, global_position);
CREATE INDEX es_events_type_idx
  ON es_events (event_type, tx_id, global_position);

-- The database itself refuses every change but INSERT, whoever asks.
CREATE FUNCTION es_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'es_events is append-only: % refused', TG_OP
    USING ERRCODE = 'ES001';
END
$$;
CREATE TRIGGER es_events_no_update BEFORE UPDATE ON es_events
  FOR EACH STATEMENT EXECUTE FUNCTION es_refuse_change();
CREATE TRIGGER es_events_no_delete BEFORE DELETE ON es_events
  FOR EACH STATEMENT EXECUTE FUNCTION es_refuse_change();
CREATE TRIGGER es_events_no_truncate BEFORE TRUNCATE ON es_events
  FOR EACH STATEMENT EXECUTE FUNCTION es_refuse_change();

-- Least-privilege writer: roles are cluster-wide, so create it once.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'es_writer') THEN
    BEGIN
      CREATE ROLE es_writer NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN
      NULL; -- another database's migration created it first
    END;
  END IF;
END
$$;
REVOKE ALL ON es_events FROM es_writer;
GRANT SELECT, INSERT ON es_events TO es_writer;
GRANT SELECT ON es_schema_version TO es_writer;
