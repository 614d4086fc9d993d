ALTER TABLE batch_ledger DROP COLUMN IF EXISTS redrive;
ALTER TABLE run_partitions DROP COLUMN IF EXISTS redrive;
ALTER TABLE runs
    DROP COLUMN IF EXISTS redrives,
    DROP COLUMN IF EXISTS attempt_failed,
    DROP COLUMN IF EXISTS max_failures;
