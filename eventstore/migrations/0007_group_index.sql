-- One index for categories and consumer groups (docs/internals/eventstore.md,
-- "One index for categories and groups"): (category, tx_id,
-- global_position, bucket) takes the place of (category, tx_id,
-- global_position) and of the groups' (category, bucket, tx_id,
-- global_position). A category read is one range of it, as before; a group
-- member reads one range of it too, its buckets checked on each entry
-- (docs/eventstore.md). Every append paid an entry in both, and the
-- groups' one landed in 64 places per category, most of its page splits
-- the 50/50 ones of a page that is not the rightmost; the new one grows at
-- the right end of its category, as the category index did.
CREATE INDEX es_events_group_idx
  ON es_events (category, tx_id, global_position, bucket);
DROP INDEX es_events_category_idx, es_events_bucket_idx;
-- The tables waiting for their era were made from es_events before: they
-- lose their copies of the two (a partition keeps an index its parent no
-- longer has when it is attached), and get the new one when attached.
DO $$
DECLARE
  i regclass;
BEGIN
  FOR i IN SELECT x.indexrelid::regclass
           FROM es_partitions p
           JOIN pg_index x ON x.indrelid = p.table_name::regclass
           WHERE p.started_at IS NULL
             AND (pg_get_indexdef(x.indexrelid)
                  LIKE '%(category, tx_id, global_position)'
               OR pg_get_indexdef(x.indexrelid)
                  LIKE '%(category, bucket, tx_id, global_position)')
  LOOP
    EXECUTE format('DROP INDEX %s', i);
  END LOOP;
END
$$;

-- A member reads its buckets as one range when they are one run: share
-- the buckets of group g among its live members in runs (64 / n buckets
-- each, one more for the first 64 % n), after forgetting the members
-- whose lease expired (their buckets move at once). The runs go to the
-- members in the order of the first bucket each has (or is going to
-- have), newcomers last by id, so each member's new run overlaps its old
-- one as far as even shares allow: a newcomer takes the last run, and a
-- gone member's buckets go to its neighbours, the runs between shifting
-- to even the shares out. A bucket whose owner is live and not its new
-- one waits in next_owner for the owner's hand-over. Run with the
-- group's advisory lock held.
CREATE OR REPLACE FUNCTION es_group_rebalance(g text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  ids bigint[];
  n int;
  target bigint[] := array_fill(NULL::bigint, ARRAY[64]);
  i int;
  k int := 1;
  have int := 0;
  quota int;
BEGIN
  DELETE FROM es_group_members
   WHERE grp = g AND lease_until < clock_timestamp();
  SELECT coalesce(array_agg(m.member_id ORDER BY f.first NULLS LAST,
                            m.member_id), '{}') INTO ids
    FROM es_group_members m
    LEFT JOIN LATERAL (SELECT min(bucket) AS first FROM es_group_buckets
                        WHERE grp = g
                          AND coalesce(next_owner, owner) = m.member_id) f
      ON true
   WHERE m.grp = g;
  n := cardinality(ids);
  INSERT INTO es_group_buckets (grp, bucket)
    SELECT g, b FROM generate_series(0, 63) AS b ON CONFLICT DO NOTHING;
  IF n = 0 THEN
    UPDATE es_group_buckets SET owner = NULL, next_owner = NULL
     WHERE grp = g AND (owner IS NOT NULL OR next_owner IS NOT NULL);
    RETURN;
  END IF;
  FOR i IN 1..64 LOOP
    quota := 64 / n + (k <= 64 % n)::int;
    IF have = quota THEN
      k := k + 1;
      have := 0;
    END IF;
    target[i] := ids[k];
    have := have + 1;
  END LOOP;
  UPDATE es_group_buckets b
     SET owner = x.o, next_owner = x.nx
    FROM (SELECT t.i - 1 AS bucket,
                 CASE WHEN c.owner = ANY (ids) THEN c.owner ELSE t.m END AS o,
                 CASE WHEN c.owner = ANY (ids) AND c.owner <> t.m THEN t.m
                 END AS nx
            FROM unnest(target) WITH ORDINALITY AS t(m, i)
            JOIN es_group_buckets c ON c.grp = g AND c.bucket = t.i - 1) x
   WHERE b.grp = g AND b.bucket = x.bucket
     AND (b.owner IS DISTINCT FROM x.o OR b.next_owner IS DISTINCT FROM x.nx);
END
$$;
