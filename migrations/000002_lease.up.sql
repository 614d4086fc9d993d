-- The lease of a partition: the task that runs its batches holds it and
-- renews it while it works. lease_owner names the holder (one token per
-- acquisition), lease_expires_at is when the hold lapses unless renewed, and
-- lease_epoch is the fencing token: a sweeper that finds a lapsed lease bumps
-- the epoch and enqueues a new task (its ID carries the epoch), and every
-- commit is a compare-and-set on (lease_epoch, lease_owner), so the worker
-- that lost the lease cannot commit when it wakes up.
ALTER TABLE run_partitions
    ADD COLUMN lease_owner      text,
    ADD COLUMN lease_epoch      bigint NOT NULL DEFAULT 0 CHECK (lease_epoch >= 0),
    ADD COLUMN lease_expires_at timestamptz,
    ADD CONSTRAINT run_partitions_lease_check CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL));

-- The takeover pass looks for lapsed leases of running partitions.
CREATE INDEX run_partitions_lease_idx ON run_partitions (lease_expires_at)
    WHERE status = 'running' AND lease_expires_at IS NOT NULL;
