-- Consumer group membership (docs/eventstore.md, "Consumer groups with
-- membership"): members join a group, hold a lease they renew, and the
-- group's 64 buckets are shared among the live ones. Buckets move when a
-- member joins, leaves or lets its lease expire, with their checkpoints
-- (es_subscriptions), and a bucket has one owner at a time: a member's
-- checkpoint advance checks, in its own transaction and under the group's
-- advisory lock (held shared), that the member still owns it, so a stale
-- member cannot advance a bucket somebody else now reads.

-- The members of each group and their leases (the database's clock).
CREATE TABLE es_group_members (
  grp text NOT NULL CHECK (length(grp) BETWEEN 1 AND 255),
  member_id bigint NOT NULL CHECK (member_id > 0),
  lease_until timestamptz NOT NULL,
  joined_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (grp, member_id)
);

-- Who owns each bucket of a group. A bucket taken from a live member for
-- a newcomer first names the newcomer in next_owner: the owner stops
-- reading it at once, and hands it over at its next read (by then it has
-- acknowledged or abandoned the pages it read before), or it moves when
-- the owner's lease expires. Until then the owner may still acknowledge
-- it, so one member at a time handles a bucket's events.
CREATE TABLE es_group_buckets (
  grp text NOT NULL,
  bucket smallint NOT NULL CHECK (bucket BETWEEN 0 AND 63),
  owner bigint,
  next_owner bigint,
  PRIMARY KEY (grp, bucket)
);

-- Share the buckets of group g among its live members: forget the members
-- whose lease expired (their buckets move at once), then give each live
-- member (in member id order) 64 / n buckets, one more for the first
-- 64 % n, keeping as many of its buckets as it may and moving the others.
-- Run with the group's advisory lock held.
CREATE FUNCTION es_group_rebalance(g text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  ids bigint[];
  n int;
  quota int[];
  have int[];
  target bigint[] := array_fill(NULL::bigint, ARRAY[64]);
  r record;
  i int;
  k int := 1;
BEGIN
  DELETE FROM es_group_members
   WHERE grp = g AND lease_until < clock_timestamp();
  SELECT coalesce(array_agg(member_id ORDER BY member_id), '{}') INTO ids
    FROM es_group_members WHERE grp = g;
  n := cardinality(ids);
  INSERT INTO es_group_buckets (grp, bucket)
    SELECT g, b FROM generate_series(0, 63) AS b ON CONFLICT DO NOTHING;
  IF n = 0 THEN
    UPDATE es_group_buckets SET owner = NULL, next_owner = NULL
     WHERE grp = g AND (owner IS NOT NULL OR next_owner IS NOT NULL);
    RETURN;
  END IF;
  quota := array_fill(0, ARRAY[n]);
  have := array_fill(0, ARRAY[n]);
  FOR i IN 1..n LOOP
    quota[i] := 64 / n + CASE WHEN i <= 64 % n THEN 1 ELSE 0 END;
  END LOOP;
  -- Keep: each bucket stays with the member it is going to (or is with),
  -- while that member is under its quota.
  FOR r IN SELECT bucket, coalesce(array_position(ids, next_owner),
                                   array_position(ids, owner)) AS h
             FROM es_group_buckets WHERE grp = g ORDER BY bucket LOOP
    IF r.h IS NOT NULL AND have[r.h] < quota[r.h] THEN
      target[r.bucket + 1] := ids[r.h];
      have[r.h] := have[r.h] + 1;
    END IF;
  END LOOP;
  -- Move: the others go to the members under their quota.
  FOR i IN 1..64 LOOP
    IF target[i] IS NULL THEN
      WHILE have[k] >= quota[k] LOOP
        k := k + 1;
      END LOOP;
      target[i] := ids[k];
      have[k] := have[k] + 1;
    END IF;
  END LOOP;
  -- A bucket without a live owner goes to its target at once; one with a
  -- live owner waits in next_owner for the owner's hand-over.
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

-- The buckets member m of group g owns and reads (not those waiting for
-- their hand-over), as a bit mask (bit b = bucket b).
CREATE FUNCTION es_group_mask(g text, m bigint) RETURNS bigint
LANGUAGE sql STABLE AS $$
  SELECT coalesce(bit_or(1::bigint << bucket), 0) FROM es_group_buckets
   WHERE grp = g AND owner = m AND next_owner IS NULL
$$;

-- Member m joins group g (or renews its lease, when join is false) for
-- lease_ms milliseconds; the group is rebalanced. Returns the buckets m
-- owns now. A renewal of a member that is gone (its lease expired and
-- another member's call forgot it, or it left) raises ES002: it must join
-- again, under a new id.
CREATE FUNCTION es_group_join(g text, m bigint, lease_ms int, is_join boolean)
RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(hashtextextended('es_group ' || g, 0));
  IF is_join THEN
    INSERT INTO es_group_members (grp, member_id, lease_until)
      VALUES (g, m, clock_timestamp() + lease_ms * interval '1 ms');
  ELSE
    UPDATE es_group_members
       SET lease_until = clock_timestamp() + lease_ms * interval '1 ms'
     WHERE grp = g AND member_id = m AND lease_until >= clock_timestamp();
    IF NOT FOUND THEN
      RAISE EXCEPTION 'consumer group "%": member % is not a member (its'
                      ' lease expired or it left); join again', g, m
        USING ERRCODE = 'ES002';
    END IF;
  END IF;
  PERFORM es_group_rebalance(g);
  RETURN es_group_mask(g, m);
END
$$;

-- Member m leaves group g: its buckets move to the others at once.
CREATE FUNCTION es_group_leave(g text, m bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(hashtextextended('es_group ' || g, 0));
  DELETE FROM es_group_members WHERE grp = g AND member_id = m;
  PERFORM es_group_rebalance(g);
  RETURN 0;
END
$$;

-- Member m of group g hands over the buckets waiting for their next
-- owner (it calls this before each read: by then it acknowledged or gave up
-- the pages it read before) and returns the buckets it reads now.
CREATE FUNCTION es_group_handoff(g text, m bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM es_group_buckets WHERE grp = g AND owner = m
                AND next_owner IS NOT NULL) THEN
    PERFORM pg_advisory_xact_lock(hashtextextended('es_group ' || g, 0));
    UPDATE es_group_buckets SET owner = next_owner, next_owner = NULL
     WHERE grp = g AND owner = m AND next_owner IS NOT NULL;
  END IF;
  RETURN es_group_mask(g, m);
END
$$;

-- Advance the checkpoints of the buckets in mask to (tx, pos) for member
-- m of group g, if m still owns every one of them; otherwise raise ES001
-- and change nothing (the caller's transaction rolls back with it). The
-- group's advisory lock is held shared until the caller's transaction
-- ends, so no rebalance or hand-over moves a bucket between the check and
-- the commit, and one that committed before is seen.
CREATE FUNCTION es_group_member_ack(g text, m bigint, mask bigint, tx xid8,
                                    pos bigint)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  held bigint;
BEGIN
  PERFORM pg_advisory_xact_lock_shared(hashtextextended('es_group ' || g, 0));
  SELECT coalesce(bit_or(1::bigint << bucket), 0) INTO held
    FROM es_group_buckets
   WHERE grp = g AND owner = m AND (mask >> bucket) & 1 = 1;
  IF held <> mask THEN
    RAISE EXCEPTION 'consumer group "%": member % no longer owns buckets'
                    ' (mask %) it read; the events go to their new owner',
                    g, m, to_hex(mask # held)
      USING ERRCODE = 'ES001';
  END IF;
  INSERT INTO es_subscriptions AS s (name, bucket, tx_id, global_position)
    SELECT g, b, tx, pos FROM generate_series(0, 63) AS b
     WHERE (mask >> b) & 1 = 1
  ON CONFLICT (name, bucket) DO UPDATE SET tx_id = EXCLUDED.tx_id,
    global_position = EXCLUDED.global_position, updated_at = now()
   WHERE (s.tx_id, s.global_position)
       < (EXCLUDED.tx_id, EXCLUDED.global_position);
END
$$;

GRANT SELECT, INSERT, UPDATE, DELETE ON es_group_members, es_group_buckets
  TO es_writer;
