-- The records a run of pages left out, one row each: the page (its
-- position), the record's place in the page and why. Written by the commit
-- of the page's batch, with its data and checkpoint, so a page's rejects
-- are there exactly when its records are.
CREATE TABLE run_rejects (
    run_id bigint NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    pos    bigint NOT NULL,
    item   integer NOT NULL CHECK (item >= 0),
    error  text NOT NULL,
    PRIMARY KEY (run_id, pos, item)
);
