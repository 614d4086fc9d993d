ALTER TABLE run_partitions DROP COLUMN IF EXISTS takeovers;
