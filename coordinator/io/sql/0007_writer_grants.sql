-- What sagad does to its own tables, granted to es_writer, the event
-- store's least-privilege role (eventstore/migrations/0001_events.sql):
-- a role that is a member of es_writer runs sagad once `sagad --migrate`
-- (or a start by a role that may create tables) has made the schema, and
-- needs no right to create, alter or own anything. saga_index is upserted
-- at every transition and its notify_pending flag cleared; a deployment
-- is claimed once; definitions are only added to. (sagad_schema_version,
-- which a start reads to see that there is nothing to migrate, is granted
-- where it is created: coordinator/io/store_pg.c.)
GRANT SELECT, INSERT, UPDATE ON saga_index TO es_writer;
GRANT SELECT, INSERT ON sagad_deployment, saga_definitions TO es_writer;
