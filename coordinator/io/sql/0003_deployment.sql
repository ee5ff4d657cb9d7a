-- sagad_deployment: the one deployment (inbox topic and consumer group)
-- whose sagas this database holds. The first sagad to start claims it; a
-- sagad of another deployment on the same database refuses to start, or
-- it would recover and drive the other one's sagas (saga_index has no
-- deployment of its own). One row at most.
CREATE TABLE IF NOT EXISTS sagad_deployment (
  one boolean PRIMARY KEY DEFAULT true CHECK (one),
  inbox_topic text NOT NULL,
  group_id text NOT NULL,
  claimed_at timestamptz NOT NULL DEFAULT now());
