-- Runs that ended longer ago than sweeper.retention are deleted, and each
-- deletion sets the run_id of the kick-off records that name the run to
-- NULL: this index spares that a scan of kickoffs per deleted run.
CREATE INDEX kickoffs_run_idx ON kickoffs (run_id);
