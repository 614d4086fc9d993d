-- What each handled kick-off task (one fire of a schedule entry) did, by its
-- task ID. Redis holds the kick-off task itself, and loses it with its data:
-- the scheduler's leader then enqueues the fire's kick-off again, and this
-- record makes that a no-op for a fire that was handled already (an ETL job
-- whose run completed would otherwise start its next generation).
CREATE TABLE kickoffs (
    task_id    text PRIMARY KEY,
    entry      text NOT NULL,
    job        text NOT NULL,
    fire       timestamptz NOT NULL,
    how        text NOT NULL,
    run_id     bigint REFERENCES runs (id) ON DELETE SET NULL,
    handled_at timestamptz NOT NULL DEFAULT now()
);
