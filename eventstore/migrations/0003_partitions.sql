-- Events become a table partitioned by era (docs/internals/eventstore.md,
-- "Partitions"). An era is a run of appends: es_era names the current one,
-- every append writes it into its row, and es_roll_forward() moves on to
-- the next while no append is in flight, so each era is also a contiguous
-- range of global positions (recorded in es_partitions). The table as it
-- was becomes era 0, keeping every row, position and transaction id as
-- they were (an empty one is dropped); appends continue in era 1, and the
-- table of era 2 waits ready, attached when its era starts.

-- The current era: one row, read once by every append statement.
CREATE TABLE es_era (
  one boolean PRIMARY KEY DEFAULT true CHECK (one),
  era int NOT NULL
);
INSERT INTO es_era (era) VALUES (1);

-- One row per partition: its table, and the global positions it holds
-- (first is set when the era starts and the table is attached, last when
-- it ends; a table waiting ready for the next era has neither).
CREATE TABLE es_partitions (
  era int PRIMARY KEY,
  table_name text NOT NULL UNIQUE,
  created_at timestamptz NOT NULL DEFAULT now(),
  started_at timestamptz,
  ended_at timestamptz,
  first_position bigint,
  last_position bigint
);

-- Today's table becomes the partition of era 0: a column with a constant
-- default is added without rewriting a row. The partitioned table takes
-- its columns, defaults, identity and checks. The old table's keys are
-- rebuilt with the era in them when it is attached (a partitioned table's
-- unique keys must hold the partition key), so the old ones go first; its
-- own identity sequence goes too, after its last value has been read.
ALTER TABLE es_events RENAME TO es_events_e0;
ALTER TABLE es_events_e0 ADD COLUMN era int NOT NULL DEFAULT 0;
CREATE TEMPORARY TABLE es_legacy ON COMMIT DROP AS
  SELECT coalesce(min(global_position), 1) AS first_position,
         greatest(coalesce(max(global_position), 0),
                  (SELECT CASE WHEN is_called THEN last_value ELSE 0 END
                   FROM es_events_global_position_seq)) AS last_position
  FROM es_events_e0;
CREATE TABLE es_events (LIKE es_events_e0 INCLUDING DEFAULTS
  INCLUDING GENERATED INCLUDING IDENTITY INCLUDING CONSTRAINTS)
  PARTITION BY LIST (era);
ALTER TABLE es_events_e0 ALTER COLUMN era DROP DEFAULT,
  ALTER COLUMN global_position DROP IDENTITY,
  DROP CONSTRAINT es_events_pkey,
  DROP CONSTRAINT es_events_stream_version_key,
  DROP CONSTRAINT es_events_event_id_key;
DROP INDEX es_events_category_idx, es_events_type_idx;
DO $$
BEGIN
  EXECUTE format('ALTER SEQUENCE %s RENAME TO es_events_global_position_seq',
                 pg_get_serial_sequence('es_events', 'global_position'));
END
$$;
ALTER TRIGGER es_events_no_update ON es_events_e0
  RENAME TO es_events_e0_no_update;
ALTER TRIGGER es_events_no_delete ON es_events_e0
  RENAME TO es_events_e0_no_delete;
ALTER TRIGGER es_events_no_truncate ON es_events_e0
  RENAME TO es_events_e0_no_truncate;

ALTER TABLE es_events
  ADD CONSTRAINT es_events_pkey PRIMARY KEY (tx_id, global_position, era),
  ADD CONSTRAINT es_events_stream_version_key
    UNIQUE (stream_id, stream_version, era),
  ADD CONSTRAINT es_events_event_id_key UNIQUE (event_id, era);
CREATE INDEX es_events_category_idx
  ON es_events (category, tx_id, global_position);
CREATE INDEX es_events_type_idx
  ON es_events (event_type, tx_id, global_position);

-- The era for a row inserted without one (the library's statements name
-- it themselves, read once per statement).
CREATE FUNCTION es_current_era() RETURNS int LANGUAGE sql STABLE
  AS 'SELECT era FROM es_era';
ALTER TABLE es_events ALTER COLUMN era SET DEFAULT es_current_era();

ALTER TABLE es_events ATTACH PARTITION es_events_e0 FOR VALUES IN (0);
REVOKE ALL ON es_events_e0 FROM es_writer;
INSERT INTO es_partitions (era, table_name, started_at, ended_at,
                           first_position, last_position)
  SELECT 0, 'es_events_e0', now(), now(), first_position, last_position
  FROM es_legacy;
SELECT setval(pg_get_serial_sequence('es_events', 'global_position'),
              greatest(last_position, 1), last_position > 0)
  FROM es_legacy;

-- The append-only triggers of table t (es_events or one of its
-- partitions: statement triggers of the parent do not fire for a
-- statement naming a partition), named t_no_update and so on.
CREATE FUNCTION es_refuse_changes_on(t text) RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
  op text;
BEGIN
  FOREACH op IN ARRAY ARRAY['update', 'delete', 'truncate'] LOOP
    EXECUTE format('CREATE TRIGGER %I BEFORE %s ON %I FOR EACH STATEMENT'
                   ' EXECUTE FUNCTION es_refuse_change()',
                   t || '_no_' || op, op, t);
  END LOOP;
END
$$;
SELECT es_refuse_changes_on('es_events');

-- Create the table of era e, unless it exists: the shape, keys and
-- indexes of es_events (empty, so at once), with append-only triggers of
-- its own. It is attached when its era starts: until then no append or
-- read has one more partition to look into.
CREATE FUNCTION es_create_partition(e int) RETURNS boolean
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
  t text := 'es_events_e' || e;
BEGIN
  IF EXISTS (SELECT 1 FROM es_partitions WHERE era = e) THEN
    RETURN false;
  END IF;
  EXECUTE format('CREATE TABLE %I (LIKE es_events INCLUDING DEFAULTS'
                 ' INCLUDING GENERATED INCLUDING CONSTRAINTS'
                 ' INCLUDING INDEXES)', t);
  PERFORM es_refuse_changes_on(t);
  INSERT INTO es_partitions (era, table_name) VALUES (e, t);
  RETURN true;
END
$$;

-- Roll forward: make sure the tables of the next two eras are ready, and
-- when the current era holds at least min_events positions, start the
-- next one. The switch takes a SHARE lock on es_events, which waits for
-- every append in flight to commit and holds new ones back until the
-- switch commits (lock_wait_ms at most, 0 for no limit, then SQLSTATE
-- 55P03 and nothing changes): so two appends that could race on a stream
-- version or an event id always write the same era, where the partition's
-- unique keys decide, and an append never straddles two eras. Under that
-- lock it attaches the next era's table (empty: no scan) and moves es_era
-- on. Returns the current era. Runs as the schema's owner, so the writer
-- role may call it and still owns no partition.
CREATE FUNCTION es_roll_forward(min_events bigint, lock_wait_ms int)
RETURNS int
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
  cur int;
  first bigint;
  last bigint;
  wait text := current_setting('lock_timeout');
BEGIN
  IF min_events < 0 OR lock_wait_ms < 0 THEN
    RAISE EXCEPTION 'es_roll_forward: min_events and lock_wait_ms must not'
                    ' be negative' USING ERRCODE = '22023';
  END IF;
  PERFORM pg_advisory_xact_lock(7310868361213556);
  SELECT era INTO cur FROM es_era;
  PERFORM es_create_partition(cur + 1);
  PERFORM es_create_partition(cur + 2);
  SELECT first_position INTO first FROM es_partitions WHERE era = cur;
  last := pg_sequence_last_value(pg_get_serial_sequence('es_events',
                                                        'global_position'));
  IF coalesce(last, 0) - first + 1 < min_events THEN
    RETURN cur;
  END IF;
  PERFORM set_config('lock_timeout', lock_wait_ms || 'ms', true);
  LOCK TABLE es_events IN SHARE MODE;
  PERFORM set_config('lock_timeout', wait, true);
  EXECUTE format('ALTER TABLE es_events ATTACH PARTITION %I'
                 ' FOR VALUES IN (%s)', 'es_events_e' || (cur + 1), cur + 1);
  last := coalesce(pg_sequence_last_value(
    pg_get_serial_sequence('es_events', 'global_position')), 0);
  UPDATE es_partitions SET ended_at = now(), last_position = last
    WHERE era = cur;
  UPDATE es_partitions SET started_at = now(), first_position = last + 1
    WHERE era = cur + 1;
  UPDATE es_era SET era = cur + 1;
  RETURN cur + 1;
END
$$;

SELECT es_create_partition(1), es_create_partition(2);
ALTER TABLE es_events ATTACH PARTITION es_events_e1 FOR VALUES IN (1);
UPDATE es_partitions SET started_at = now(),
  first_position = (SELECT last_position + 1 FROM es_legacy)
  WHERE era = 1;
-- An empty table of the old shape has nothing to keep: no partition for
-- era 0, so appends and reads do not look into it.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM es_events_e0) THEN
    DROP TABLE es_events_e0;
    DELETE FROM es_partitions WHERE era = 0;
  END IF;
END
$$;

REVOKE ALL ON es_events FROM es_writer;
GRANT SELECT, INSERT ON es_events TO es_writer;
GRANT SELECT ON es_era, es_partitions TO es_writer;
REVOKE ALL ON FUNCTION es_create_partition(int) FROM PUBLIC;
REVOKE ALL ON FUNCTION es_refuse_changes_on(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION es_roll_forward(bigint, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION es_roll_forward(bigint, int) TO es_writer;
