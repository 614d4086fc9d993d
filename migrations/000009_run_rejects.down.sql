DROP TABLE run_rejects;
