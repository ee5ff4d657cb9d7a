#!/usr/bin/env bash
# Random (version 4) against time-ordered (version 7) event ids in a large
# unique index: two tables of N rows (default 5,000,000) with a uuid key,
# then 200 commits of 500 rows into each, right after a CHECKPOINT, three
# rounds; prints the time and the WAL per commit. Runs against the embedded
# PostgreSQL (scripts/pg.sh start first) in a scratch database it creates
# and drops. Usage: [N=ROWS] bench/eventstore/event_ids.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
n=${N:-5000000}
ci=$("$root/scripts/pg.sh" conninfo)
db=bench_event_ids_$$
admin() { psql -X -q -v ON_ERROR_STOP=1 "$ci" "$@"; }
q() { psql -X -q -v ON_ERROR_STOP=1 "${ci/dbname=saga/dbname=$db}" "$@"; }
admin -c "CREATE DATABASE $db"
trap 'admin -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"' EXIT
q <<SQL
-- a version 7 layout: the time in milliseconds in the first 48 bits
CREATE FUNCTION v7() RETURNS uuid LANGUAGE sql VOLATILE AS \$\$
  SELECT encode(overlay(uuid_send(gen_random_uuid()) PLACING
    substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint)
    FROM 3) FROM 1 FOR 6), 'hex')::uuid \$\$;
CREATE TABLE t4 (id uuid NOT NULL UNIQUE, pad text);
CREATE TABLE t7 (id uuid NOT NULL UNIQUE, pad text);
INSERT INTO t4 SELECT gen_random_uuid(), repeat('x', 300) FROM generate_series(1, $n);
INSERT INTO t7 SELECT v7(), repeat('x', 300) FROM generate_series(1, $n);
VACUUM ANALYZE t4;
VACUUM ANALYZE t7;
SQL
echo "$n rows each; id index sizes: random $(q -Atc "SELECT pg_size_pretty(pg_relation_size('t4_id_key'))"), time-ordered $(q -Atc "SELECT pg_size_pretty(pg_relation_size('t7_id_key'))")"
for round in 1 2 3; do
  for t in t4 t7; do
    if [ $t = t4 ]; then f="gen_random_uuid()" kind=random; else f="v7()" kind=time-ordered; fi
    q -c "CHECKPOINT"
    l0=$(q -Atc "SELECT pg_current_wal_lsn()")
    s=$(date +%s.%N)
    for _ in $(seq 200); do
      echo "INSERT INTO $t SELECT $f, repeat('x', 300) FROM generate_series(1, 500);"
    done | q
    e=$(date +%s.%N)
    wal=$(q -Atc "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$l0')")
    printf 'round %d, %-12s ids: %.2f ms and %d WAL bytes per 500-row commit\n' \
      "$round" "$kind" "$(echo "($e - $s) * 1000 / 200" | bc -l)" $((wal / 200))
  done
done
