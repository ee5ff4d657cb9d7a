-- An era that has ended takes no more rows (docs/internals/eventstore.md,
-- "A single append that skips the version probe"). Appends read the
-- current era in their statement, so none of the library's wrote into an
-- ended era; a row inserted by hand with an old era could, and broke the
-- rule that each era is a contiguous range of positions. Now each ended
-- era's table has a row trigger that refuses the insert (SQLSTATE ES003),
-- created by the switch under its lock. A store that remembers the era of
-- a stream's last row appends the next at that era without reading
-- es_era: refused, it appends again, probed, in the current era.

CREATE FUNCTION es_refuse_ended_era() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'era % of es_events has ended (table %): appends go to'
                  ' the current era', NEW.era, TG_TABLE_NAME
    USING ERRCODE = 'ES003';
END
$$;

-- Make the table of era e refuse new rows, unless it is gone (archived)
-- or already does.
CREATE FUNCTION es_end_era(e int) RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
  t text;
BEGIN
  SELECT table_name INTO t FROM es_partitions WHERE era = e;
  IF t IS NULL OR to_regclass(quote_ident(t)) IS NULL OR EXISTS (
       SELECT 1 FROM pg_trigger
       WHERE tgrelid = to_regclass(quote_ident(t))
         AND tgname = t || '_ended') THEN
    RETURN;
  END IF;
  EXECUTE format('CREATE TRIGGER %I BEFORE INSERT ON %I FOR EACH ROW'
                 ' EXECUTE FUNCTION es_refuse_ended_era()', t || '_ended', t);
END
$$;
REVOKE ALL ON FUNCTION es_end_era(int) FROM PUBLIC;

-- The eras that have ended already.
SELECT es_end_era(era) FROM es_partitions
  WHERE era < (SELECT era FROM es_era) AND started_at IS NOT NULL;

-- es_roll_forward as in 0003_partitions.sql, and the era that ends refuses
-- new rows from the switch on: the trigger is created under the switch's
-- SHARE lock on es_events (its own SHARE ROW EXCLUSIVE lock on the ended
-- era's table waits for no reader), so an append that comes after the
-- switch meets it.
CREATE OR REPLACE FUNCTION es_roll_forward(min_events bigint,
                                           lock_wait_ms int)
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
  PERFORM es_end_era(cur); -- its lock within the same lock_wait_ms
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
