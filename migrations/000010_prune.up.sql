-- Runs that ended longer ago than sweeper.retention are deleted, oldest
-- first (checkpoint.PruneRuns): this index finds them in that order without
-- a scan and sort of every run. It leaves out updated_at, which every
-- commit changes: indexed, it would stop those updates being HOT.
CREATE INDEX runs_ended_idx ON runs (finished_at, id)
    WHERE status IN ('completed', 'failed', 'cancelled', 'timed_out');

-- Each deletion sets the run_id of the kick-off records that name the run
-- to NULL: this index spares that a scan of kickoffs per deleted run.
CREATE INDEX kickoffs_run_idx ON kickoffs (run_id);
