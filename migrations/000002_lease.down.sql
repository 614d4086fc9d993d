DROP INDEX IF EXISTS run_partitions_lease_idx;
ALTER TABLE run_partitions
    DROP CONSTRAINT IF EXISTS run_partitions_lease_check,
    DROP COLUMN IF EXISTS lease_expires_at,
    DROP COLUMN IF EXISTS lease_epoch,
    DROP COLUMN IF EXISTS lease_owner;
