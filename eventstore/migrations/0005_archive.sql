-- Retention and archive (docs/internals/eventstore.md, "Archives"). An
-- era whose every stream is finished and that ended long enough ago is
-- written to an archive file by saga-es-archive, then detached and
-- dropped by es_archive_drop() in one audited step. Only the role
-- es_admin may run that step; the writer still cannot delete anything.

-- The archive role. Roles are cluster-wide: another database's migration
-- may have created it already, or be creating it now.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'es_admin') THEN
    CREATE ROLE es_admin NOLOGIN;
  END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
  NULL;
END
$$;

-- Streams their owner declared closed (es_close_stream): no event will be
-- appended to them again, so they count as finished for the archive. A
-- saga's stream ("saga-<id>") is finished without a row here once
-- saga_index says the saga is terminal (below).
CREATE TABLE es_closed_streams (
  stream_id text PRIMARY KEY,
  closed_at timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT ON es_closed_streams TO es_writer;

-- When an era's table was archived and dropped (NULL while attached).
ALTER TABLE es_partitions ADD COLUMN archived_at timestamptz;

-- The audit of archives: one row per era detached and dropped, written in
-- the same transaction as the drop. Append-only, like the events.
CREATE TABLE es_archive_log (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  archived_at timestamptz NOT NULL DEFAULT now(),
  archived_by text NOT NULL,
  era int NOT NULL,
  table_name text NOT NULL,
  file text NOT NULL,
  events bigint NOT NULL,
  streams bigint NOT NULL,
  sagas bigint NOT NULL,
  first_position bigint,
  last_position bigint,
  checksum text NOT NULL
);
SELECT es_refuse_changes_on('es_archive_log');

-- The streams of era e that are not finished: neither closed nor the
-- stream of a saga that saga_index (the coordinator's table, when this
-- database has one) shows terminal with its final notification
-- delivered. A saga stream without an index row is not finished.
CREATE FUNCTION es_open_streams(e int)
RETURNS TABLE (stream_id text)
LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $$
BEGIN
  IF to_regclass('saga_index') IS NULL THEN
    RETURN QUERY
      SELECT DISTINCT ev.stream_id FROM es_events ev
      WHERE ev.era = e AND NOT EXISTS (
        SELECT 1 FROM es_closed_streams c WHERE c.stream_id = ev.stream_id);
  ELSE
    RETURN QUERY EXECUTE
      'SELECT s.stream_id FROM (SELECT DISTINCT ev.stream_id FROM es_events ev'
      ' WHERE ev.era = $1) s WHERE NOT EXISTS (SELECT 1 FROM'
      ' es_closed_streams c WHERE c.stream_id = s.stream_id) AND NOT EXISTS'
      ' (SELECT 1 FROM saga_index i WHERE s.stream_id LIKE ''saga-%'''
      ' AND i.saga_id = substr(s.stream_id, 6)'
      ' AND i.status IN (''completed'', ''compensated'')'
      ' AND NOT i.notify_pending)'
      USING e;
  END IF;
END
$$;

-- Every era that has ended and is still attached, oldest first, with what
-- decides whether it may be archived: whether it ended more than
-- older_than_ms ago and, for those that did (the others are not read:
-- NULL), its counts and how many of its streams are still open (and the
-- first of them). eligible = ended long enough ago and no open stream.
CREATE FUNCTION es_archive_candidates(older_than_ms bigint)
RETURNS TABLE (era int, table_name text, ended_at timestamptz,
               first_position bigint, last_position bigint, events bigint,
               streams bigint, open_streams bigint, first_open text,
               old_enough boolean, eligible boolean)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
  p record;
BEGIN
  IF older_than_ms < 0 THEN
    RAISE EXCEPTION 'es_archive_candidates: older_than_ms must not be'
                    ' negative' USING ERRCODE = '22023';
  END IF;
  FOR p IN SELECT * FROM es_partitions ep
           WHERE ep.ended_at IS NOT NULL AND ep.archived_at IS NULL
             AND ep.era < (SELECT e.era FROM es_era e)
           ORDER BY ep.era LOOP
    era := p.era;
    table_name := p.table_name;
    ended_at := p.ended_at;
    first_position := p.first_position;
    last_position := p.last_position;
    old_enough := p.ended_at < now() - older_than_ms * interval '1 ms';
    events := NULL;
    streams := NULL;
    open_streams := NULL;
    first_open := NULL;
    IF old_enough THEN
      SELECT count(*), count(DISTINCT ev.stream_id) INTO events, streams
        FROM es_events ev WHERE ev.era = p.era;
      SELECT count(*), min(o.stream_id) INTO open_streams, first_open
        FROM es_open_streams(p.era) o;
    END IF;
    eligible := old_enough AND open_streams = 0;
    RETURN NEXT;
  END LOOP;
END
$$;

-- Detach and drop the table of era e after its archive file was written
-- and verified, in one transaction, with its row in es_archive_log (who:
-- the session's login role). The caller states what the file holds; the
-- table must still hold exactly that (events, first and last position),
-- the era must have ended, and every stream of it must still be finished,
-- checked again while a SHARE lock on the era's table keeps any insert
-- out of it (appends to the current era go on). Only the detach and drop
-- take the ACCESS EXCLUSIVE lock on es_events. Each lock waits at most
-- lock_wait_ms (0: no limit), then SQLSTATE 55P03 and nothing changes. The
-- index rows (saga_index) and snapshots of the streams that have no event
-- left in the store go too. Returns the number of saga_index rows
-- removed.
CREATE FUNCTION es_archive_drop(e int, file text, n_events bigint,
                                n_streams bigint, first_pos bigint,
                                last_pos bigint, checksum text,
                                lock_wait_ms int)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
  p es_partitions;
  got bigint;
  lo bigint;
  hi bigint;
  open_n bigint;
  streams text[];
  sagas bigint := 0;
  wait text := current_setting('lock_timeout');
BEGIN
  IF lock_wait_ms < 0 OR file IS NULL OR checksum IS NULL THEN
    RAISE EXCEPTION 'es_archive_drop: a file, a checksum and a lock wait'
                    ' that is not negative are required'
      USING ERRCODE = '22023';
  END IF;
  PERFORM pg_advisory_xact_lock(7310868361213556);
  SELECT * INTO p FROM es_partitions ep WHERE ep.era = e;
  IF NOT FOUND OR p.archived_at IS NOT NULL OR p.ended_at IS NULL
     OR e >= (SELECT x.era FROM es_era x) THEN
    RAISE EXCEPTION 'era % is not an attached era that has ended', e
      USING ERRCODE = '55000';
  END IF;
  PERFORM set_config('lock_timeout', lock_wait_ms || 'ms', true);
  EXECUTE format('LOCK TABLE %I IN SHARE MODE', p.table_name);
  SELECT count(*), min(global_position), max(global_position)
    INTO got, lo, hi FROM es_events WHERE era = e;
  IF got <> n_events OR lo IS DISTINCT FROM first_pos
     OR hi IS DISTINCT FROM last_pos THEN
    RAISE EXCEPTION 'era % holds % events at positions % to %, the archive'
                    ' % events at % to %', e, got, lo, hi, n_events,
                    first_pos, last_pos USING ERRCODE = '55000';
  END IF;
  SELECT count(*) INTO open_n FROM es_open_streams(e);
  IF open_n > 0 THEN
    RAISE EXCEPTION 'era % has % streams that are not finished', e, open_n
      USING ERRCODE = '55000';
  END IF;
  SELECT array_agg(DISTINCT stream_id) INTO streams
    FROM es_events WHERE era = e;
  LOCK TABLE es_events IN ACCESS EXCLUSIVE MODE;
  PERFORM set_config('lock_timeout', wait, true);
  EXECUTE format('ALTER TABLE es_events DETACH PARTITION %I', p.table_name);
  EXECUTE format('DROP TABLE %I', p.table_name);
  -- What is derived from streams now wholly archived goes with them.
  IF to_regclass('saga_index') IS NOT NULL THEN
    EXECUTE 'DELETE FROM saga_index i USING unnest($1) AS s(id)'
            ' WHERE s.id LIKE ''saga-%'' AND i.saga_id = substr(s.id, 6)'
            ' AND NOT EXISTS (SELECT 1 FROM es_events ev'
            ' WHERE ev.stream_id = s.id)'
      USING streams;
    GET DIAGNOSTICS sagas = ROW_COUNT;
  END IF;
  DELETE FROM es_snapshots s USING unnest(streams) AS u(id)
    WHERE s.stream_id = u.id
      AND NOT EXISTS (SELECT 1 FROM es_events ev WHERE ev.stream_id = u.id);
  UPDATE es_partitions SET archived_at = now() WHERE era = e;
  INSERT INTO es_archive_log (archived_by, era, table_name, file, events,
                              streams, sagas, first_position, last_position,
                              checksum)
    VALUES (session_user, e, p.table_name, file, n_events, n_streams, sagas,
            first_pos, last_pos, checksum);
  RETURN sagas;
END
$$;

REVOKE ALL ON FUNCTION es_open_streams(int) FROM PUBLIC;
REVOKE ALL ON FUNCTION es_archive_candidates(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION es_archive_drop(int, text, bigint, bigint, bigint,
                                       bigint, text, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION es_archive_candidates(bigint) TO es_admin;
GRANT EXECUTE ON FUNCTION es_archive_drop(int, text, bigint, bigint, bigint,
                                          bigint, text, int) TO es_admin;
-- es_admin reads the events it archives and the audit; it changes nothing
-- but through es_archive_drop.
GRANT SELECT ON es_events, es_partitions, es_era, es_closed_streams,
                es_schema_version,
                es_archive_log TO es_admin;
