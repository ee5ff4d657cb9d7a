-- notify_pending: the saga is terminal and its final notification
-- (COMPLETED or COMPENSATED) is not yet known to be delivered. Written true
-- with the final transition, cleared by a later batch once the broker has
-- the notification; recovery lists terminal sagas that still have it and
-- sends their final notification again (at least once across a crash).
ALTER TABLE saga_index ADD COLUMN IF NOT EXISTS notify_pending boolean
  NOT NULL DEFAULT false;
CREATE INDEX IF NOT EXISTS saga_index_notify_idx ON saga_index (partition)
  WHERE notify_pending;
