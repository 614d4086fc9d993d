-- A batch's commit updates the status, attempts and error of each of its
-- items. Postgres can update a row in place (a HOT update: no new index
-- entries) only when no indexed column changes and the row's page has room.
-- The partial index on failed items names status in its predicate, which
-- made every item update write new entries in all three indexes: about 5 ms
-- of a batch of 500 (BenchmarkCommit). Without it, and with room left on each
-- page for the new row versions, the update costs about a third of that.
-- The failed items of a run are found through the primary key (run_id, pos)
-- instead, a range scan over the run's items: a run has thousands.
DROP INDEX run_items_failed_idx;
ALTER TABLE run_items SET (fillfactor = 60);
