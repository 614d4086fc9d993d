-- The stock universe and its daily prices.
CREATE TABLE stocks (
    symbol     text PRIMARY KEY CHECK (symbol ~ '^[A-Z0-9][A-Z0-9.\-]{0,19}$'),
    name       text,
    exchange   text,
    active     boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE stock_prices (
    symbol     text NOT NULL,
    trade_date date NOT NULL,
    open       numeric NOT NULL CHECK (open >= 0),
    high       numeric NOT NULL CHECK (high >= 0),
    low        numeric NOT NULL CHECK (low >= 0),
    close      numeric NOT NULL CHECK (close >= 0),
    volume     bigint NOT NULL CHECK (volume >= 0),
    run_id     bigint,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, trade_date)
);

-- runs: one row per (job, run_key); the run's work is frozen at creation.
CREATE TABLE runs (
    id          bigserial PRIMARY KEY,
    job         text NOT NULL,
    run_key     text NOT NULL,
    params      jsonb NOT NULL DEFAULT '{}'::jsonb,
    status      text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'running', 'paused', 'completed', 'failed', 'cancelled')),
    batch_size  integer NOT NULL CHECK (batch_size > 0),
    total       bigint NOT NULL DEFAULT 0 CHECK (total >= 0),
    processed   bigint NOT NULL DEFAULT 0 CHECK (processed >= 0),
    succeeded   bigint NOT NULL DEFAULT 0 CHECK (succeeded >= 0),
    failed      bigint NOT NULL DEFAULT 0 CHECK (failed >= 0),
    records     bigint NOT NULL DEFAULT 0 CHECK (records >= 0),
    attempt     integer NOT NULL DEFAULT 1 CHECK (attempt > 0),
    last_error  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    started_at  timestamptz,
    finished_at timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (job, run_key)
);

CREATE INDEX runs_created_at_idx ON runs (created_at DESC, id DESC);
CREATE INDEX runs_active_idx ON runs (status) WHERE status IN ('pending', 'running');

-- run_partitions: the checkpoints. Each partition is an independent chain of
-- batches over the item positions [start_pos, end_pos). cursor is the next
-- position to process, seq the number of batches committed, and task_seq the
-- seq of the task that currently owns the chain (the one a sweeper looks for).
CREATE TABLE run_partitions (
    run_id           bigint NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    partition        integer NOT NULL CHECK (partition >= 0),
    status           text NOT NULL DEFAULT 'running'
                     CHECK (status IN ('running', 'completed', 'failed', 'cancelled')),
    attempt          integer NOT NULL DEFAULT 1 CHECK (attempt > 0),
    start_pos        bigint NOT NULL CHECK (start_pos >= 0),
    end_pos          bigint NOT NULL CHECK (end_pos >= start_pos),
    cursor           bigint NOT NULL CHECK (cursor >= start_pos AND cursor <= end_pos),
    seq              bigint NOT NULL DEFAULT 0 CHECK (seq >= 0),
    task_seq         bigint NOT NULL DEFAULT 0 CHECK (task_seq >= 0 AND task_seq <= seq),
    last_error       text,
    last_progress_at timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, partition)
);

-- run_items: one row per unit of a run's frozen work (a symbol of a stock run).
CREATE TABLE run_items (
    run_id     bigint NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    pos        bigint NOT NULL CHECK (pos >= 0),
    key        text NOT NULL,
    status     text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts   integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    error      text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, pos),
    UNIQUE (run_id, key)
);

CREATE INDEX run_items_failed_idx ON run_items (run_id) WHERE status = 'failed';

-- batch_ledger: one row per committed batch. The primary key is the
-- at-most-once guarantee in the data: a batch (run, partition, seq) commits once.
CREATE TABLE batch_ledger (
    run_id       bigint NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    partition    integer NOT NULL,
    seq          bigint NOT NULL,
    attempt      integer NOT NULL,
    cursor_from  bigint NOT NULL,
    cursor_to    bigint NOT NULL CHECK (cursor_to >= cursor_from),
    items        integer NOT NULL,
    succeeded    integer NOT NULL,
    failed       integer NOT NULL,
    records      integer NOT NULL,
    task_id      text NOT NULL,
    worker       text NOT NULL,
    started_at   timestamptz NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    duration_ms  integer NOT NULL,
    PRIMARY KEY (run_id, partition, seq),
    FOREIGN KEY (run_id, partition) REFERENCES run_partitions (run_id, partition) ON DELETE CASCADE
);
