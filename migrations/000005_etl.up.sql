-- ETL page pulls, time budgets and run generations.

-- timed_out: an attempt of the run used up its time budget and stopped at a
-- page boundary; like failed it keeps its checkpoints and is resumed with
-- retry, but it is no failure of the source.
ALTER TABLE runs DROP CONSTRAINT runs_status_check;
ALTER TABLE runs ADD CONSTRAINT runs_status_check CHECK (status IN
    ('pending', 'running', 'paused', 'completed', 'failed', 'cancelled', 'timed_out'));
ALTER TABLE run_partitions DROP CONSTRAINT run_partitions_status_check;
ALTER TABLE run_partitions ADD CONSTRAINT run_partitions_status_check CHECK (status IN
    ('running', 'completed', 'failed', 'cancelled', 'timed_out'));

ALTER TABLE runs
    -- unit says what a partition's positions count: the run's items (the
    -- symbols of a daily sync, one run_items row each) or the pages of a
    -- paginated source (an ETL pull; no run_items).
    ADD COLUMN unit text NOT NULL DEFAULT 'items' CHECK (unit IN ('items', 'pages')),
    -- generation tells apart the runs of one (job, run_key): an ETL job is
    -- pulled again once its last run with those parameters completed.
    ADD COLUMN generation integer NOT NULL DEFAULT 1 CHECK (generation > 0),
    -- budget_ms is the time budget of one attempt (NULL: none);
    -- attempt_started_at is when the current attempt started running, and
    -- elapsed_ms the summed running time of the attempts that ended. The
    -- trigger below keeps both.
    ADD COLUMN budget_ms bigint CHECK (budget_ms > 0),
    ADD COLUMN attempt_started_at timestamptz,
    ADD COLUMN elapsed_ms bigint NOT NULL DEFAULT 0 CHECK (elapsed_ms >= 0),
    -- source_total is the total the source reported last, to tell drift
    -- from the run's frozen total; warnings are what the run noticed on the
    -- way (drift, short pages), at most 20.
    ADD COLUMN source_total bigint,
    ADD COLUMN warnings text[] NOT NULL DEFAULT '{}';

ALTER TABLE runs DROP CONSTRAINT runs_job_run_key_key;
ALTER TABLE runs ADD CONSTRAINT runs_job_run_key_generation_key UNIQUE (job, run_key, generation);

UPDATE runs SET attempt_started_at = started_at WHERE status = 'running';
UPDATE runs SET elapsed_ms = (extract(epoch FROM finished_at - started_at) * 1000)::bigint
    WHERE finished_at IS NOT NULL AND started_at IS NOT NULL AND finished_at >= started_at;

-- run_attempts: one row per attempt of a run that ended, however it ended
-- (completed, failed, cancelled, timed_out): the history behind the
-- duration report and its budget suggestions.
CREATE TABLE run_attempts (
    run_id      bigint NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    attempt     integer NOT NULL,
    status      text NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    elapsed_ms  bigint NOT NULL CHECK (elapsed_ms >= 0),
    processed   bigint NOT NULL,
    PRIMARY KEY (run_id, attempt)
);

-- runs_track_attempt times the attempts: the clock of an attempt starts when
-- the run becomes running (its first batch, a retry, a redrive), and when
-- the run stops, whatever stops it, the attempt's time is added to
-- elapsed_ms and the attempt is recorded in run_attempts.
CREATE FUNCTION runs_track_attempt() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    took bigint;
BEGIN
    IF NEW.status = 'running' AND OLD.status <> 'running' THEN
        NEW.attempt_started_at := now();
    ELSIF OLD.status IN ('pending', 'running') AND NEW.status NOT IN ('pending', 'running')
            AND OLD.attempt_started_at IS NOT NULL THEN
        took := greatest((extract(epoch FROM clock_timestamp() - OLD.attempt_started_at) * 1000)::bigint, 0);
        NEW.elapsed_ms := OLD.elapsed_ms + took;
        INSERT INTO run_attempts (run_id, attempt, status, started_at, finished_at, elapsed_ms, processed)
        VALUES (NEW.id, OLD.attempt, NEW.status, OLD.attempt_started_at, clock_timestamp(), took, NEW.processed)
        ON CONFLICT (run_id, attempt) DO UPDATE SET status = excluded.status,
            finished_at = excluded.finished_at, elapsed_ms = run_attempts.elapsed_ms + excluded.elapsed_ms,
            processed = excluded.processed;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER runs_track_attempt BEFORE UPDATE OF status ON runs
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION runs_track_attempt();

-- page_token is the pagination state a page position does not hold: the
-- next cursor token of a cursor-style source.
ALTER TABLE run_partitions ADD COLUMN page_token text;

-- etl_records: where ETL jobs land their records by default, one row per
-- (job, record key); pulling a page again updates its rows.
CREATE TABLE etl_records (
    job        text NOT NULL,
    record_key text NOT NULL,
    payload    jsonb NOT NULL,
    run_id     bigint,
    loaded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job, record_key)
);
CREATE INDEX etl_records_run_idx ON etl_records (run_id);
