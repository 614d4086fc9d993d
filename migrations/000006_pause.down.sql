UPDATE run_partitions SET status = 'cancelled' WHERE status = 'paused';
UPDATE runs SET status = 'cancelled', finished_at = now() WHERE status = 'paused';
ALTER TABLE run_partitions DROP CONSTRAINT run_partitions_status_check;
ALTER TABLE run_partitions ADD CONSTRAINT run_partitions_status_check CHECK (status IN
    ('running', 'completed', 'failed', 'cancelled', 'timed_out'));
