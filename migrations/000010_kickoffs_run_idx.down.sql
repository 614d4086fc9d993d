DROP INDEX kickoffs_run_idx;
