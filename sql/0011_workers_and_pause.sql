-- The workers registry and the pipeline's pause switch (issue 24, points 1 and 2).
-- Two new tables, no change to works: additive, a binary that predates them never
-- reads them (its consumers neither register nor pause, which is all they lose).
--
-- One row per `consume` process (and `up`), written by its heartbeat every 2 s. The id
-- is the one the sweeper writes into works.locked_by, so a lease names its worker.
-- `state` is what the worker last said; a row whose last_seen is old is shown as gone
-- by the readers (src/storage/workers.rs), not by a writer: a killed worker writes
-- nothing. Rows gone for a day are deleted by the live workers' heartbeats.
CREATE TABLE workers (
    id           TEXT        PRIMARY KEY,
    host         TEXT        NOT NULL,
    pid          BIGINT      NOT NULL,
    version      TEXT        NOT NULL,
    queue        TEXT        NOT NULL,
    prefetch     BIGINT      NOT NULL,
    started_on   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen    TIMESTAMPTZ NOT NULL DEFAULT now(),
    works_stored BIGINT      NOT NULL DEFAULT 0,
    in_flight    BIGINT      NOT NULL DEFAULT 0,
    state        TEXT        NOT NULL
                 CHECK (state IN ('running', 'paused', 'stopping', 'stopped'))
);
CREATE INDEX workers_last_seen ON workers (last_seen);

-- One row: whether the pipeline is paused. The CHECK on the key keeps it one row.
-- Changing it sends NOTIFY pp_pipeline (storage::pipeline), and consumers also read
-- it every second, so a missed notification costs at most that.
CREATE TABLE pipeline_state (
    one        BOOLEAN     PRIMARY KEY DEFAULT true CHECK (one),
    paused     BOOLEAN     NOT NULL DEFAULT false,
    changed_on TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO pipeline_state (one) VALUES (true);
