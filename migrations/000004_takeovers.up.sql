-- takeovers counts the takeovers of a partition since its last commit: a
-- batch that kills or hangs every worker that runs it would otherwise be
-- taken over, under a new task with a fresh retry budget, for ever. Past
-- the run's retry budget the partition and its run fail instead.
ALTER TABLE run_partitions
    ADD COLUMN takeovers integer NOT NULL DEFAULT 0 CHECK (takeovers >= 0);
