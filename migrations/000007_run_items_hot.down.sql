ALTER TABLE run_items RESET (fillfactor);
CREATE INDEX run_items_failed_idx ON run_items (run_id) WHERE status = 'failed';
