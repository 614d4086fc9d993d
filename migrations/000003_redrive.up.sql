-- Failure threshold: max_failures is how many items one attempt of the run may
-- fail before the run fails early (frozen at creation from the configured
-- count or percentage of its total; NULL means no limit), and attempt_failed
-- counts the item failures of the current attempt.
ALTER TABLE runs
    ADD COLUMN max_failures   bigint CHECK (max_failures >= 0),
    ADD COLUMN attempt_failed bigint NOT NULL DEFAULT 0 CHECK (attempt_failed >= 0),
    -- redrives counts the passes over the run's failed items after it completed.
    ADD COLUMN redrives       integer NOT NULL DEFAULT 0 CHECK (redrives >= 0);

-- A partition in a redrive pass (redrive > 0) runs only the items of its
-- range that had failed; the ledger records the pass of each batch, so that
-- each pass is a gapless cover of its partitions on its own.
ALTER TABLE run_partitions
    ADD COLUMN redrive integer NOT NULL DEFAULT 0 CHECK (redrive >= 0);
ALTER TABLE batch_ledger
    ADD COLUMN redrive integer NOT NULL DEFAULT 0 CHECK (redrive >= 0);
