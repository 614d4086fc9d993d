DROP TABLE etl_records;
ALTER TABLE run_partitions DROP COLUMN page_token;
DROP TRIGGER runs_track_attempt ON runs;
DROP FUNCTION runs_track_attempt();
DROP TABLE run_attempts;
DELETE FROM runs WHERE generation > 1;
ALTER TABLE runs DROP CONSTRAINT runs_job_run_key_generation_key;
ALTER TABLE runs ADD CONSTRAINT runs_job_run_key_key UNIQUE (job, run_key);
DELETE FROM runs WHERE unit = 'pages';
UPDATE run_partitions SET status = 'failed' WHERE status = 'timed_out';
UPDATE runs SET status = 'failed' WHERE status = 'timed_out';
ALTER TABLE runs DROP COLUMN unit, DROP COLUMN generation, DROP COLUMN budget_ms,
    DROP COLUMN attempt_started_at, DROP COLUMN elapsed_ms, DROP COLUMN source_total, DROP COLUMN warnings;
ALTER TABLE runs DROP CONSTRAINT runs_status_check;
ALTER TABLE runs ADD CONSTRAINT runs_status_check CHECK (status IN
    ('pending', 'running', 'paused', 'completed', 'failed', 'cancelled'));
ALTER TABLE run_partitions DROP CONSTRAINT run_partitions_status_check;
ALTER TABLE run_partitions ADD CONSTRAINT run_partitions_status_check CHECK (status IN
    ('running', 'completed', 'failed', 'cancelled'));
