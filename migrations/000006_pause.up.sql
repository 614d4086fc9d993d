-- Pause: an operator stops a run at a batch boundary and resumes it later
-- from its checkpoints. A paused run's partitions are paused too, once the
-- batch under way on each (if any) has committed.
ALTER TABLE run_partitions DROP CONSTRAINT run_partitions_status_check;
ALTER TABLE run_partitions ADD CONSTRAINT run_partitions_status_check CHECK (status IN
    ('running', 'paused', 'completed', 'failed', 'cancelled', 'timed_out'));
