/* The raw baseline table of the benchmarks: es_events as it was before it
 * was partitioned (eventstore/migrations/0001_events.sql), one plain table
 * with the same columns, defaults, identity and keys (category a stored
 * generated column, as it was until migration 0009), without the era and
 * bucket columns, their index and the partitions. Ratios against it
 * measure what the library and the partitioned table cost over the bare
 * INSERT or COPY. */
#ifndef SAGA_BENCH_RAW_H
#define SAGA_BENCH_RAW_H

#define BENCH_RAW_EVENTS_SQL                                                  \
  "CREATE TABLE raw_events (LIKE es_events INCLUDING DEFAULTS"                \
  " INCLUDING GENERATED INCLUDING IDENTITY INCLUDING CONSTRAINTS);"           \
  " ALTER TABLE raw_events DROP COLUMN era, DROP COLUMN bucket,"             \
  " DROP COLUMN category, ADD COLUMN category text GENERATED ALWAYS AS"       \
  " (split_part(stream_id, '-', 1)) STORED,"                                  \
  " ADD PRIMARY KEY (tx_id, global_position),"                                \
  " ADD UNIQUE (stream_id, stream_version), ADD UNIQUE (event_id);"          \
  " CREATE INDEX ON raw_events (category, tx_id, global_position);"           \
  " CREATE INDEX ON raw_events (event_type, tx_id, global_position)"

#endif
