-- stuck_at: when the saga counts as stuck if nothing happens first, by the
-- stuck_after_ms of the step it waits on (the smallest among a parallel
-- group's), written by the coordinator with every transition
-- (sm_stuck_at): the admin endpoint, sagactl and the saga_stuck gauge then
-- judge a saga by its own step's threshold, never by one global value.
-- 'infinity' = it cannot become stuck as it stands (terminal, or waiting on
-- no step); a parked saga holds the time it parked. NULL only in rows
-- written before this column existed: readers fall back to a threshold.
ALTER TABLE saga_index ADD COLUMN IF NOT EXISTS stuck_at timestamptz;
