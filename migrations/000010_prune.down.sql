DROP INDEX kickoffs_run_idx;
DROP INDEX runs_ended_idx;
