-- Works and their events. The consumer writes a queued work and its four events in one
-- transaction; API works start pending and are claimed under a lease by the sweeper.
CREATE TABLE works (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    work_code    TEXT        NOT NULL UNIQUE,
    add_up_to    BIGINT      NOT NULL CHECK (add_up_to BETWEEN 0 AND 4294967295),
    status       TEXT        NOT NULL DEFAULT 'pending'
                             CHECK (status IN ('pending', 'running', 'done', 'failed')),
    done         BOOLEAN     GENERATED ALWAYS AS (status = 'done') STORED,
    result       BIGINT      CHECK ((status = 'done') = (result IS NOT NULL)),
    message_id   TEXT        UNIQUE,
    locked_by    TEXT,
    locked_until TIMESTAMPTZ,
    attempts     INTEGER     NOT NULL DEFAULT 0,
    created_on   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_on   TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Prefix search on work_code with LIKE 'prefix%' whatever the database collation.
CREATE INDEX works_work_code_prefix ON works (work_code text_pattern_ops);
CREATE INDEX works_created_on ON works (created_on);
-- Claimable works only: stays small however many works are done.
CREATE INDEX works_claimable ON works (id) WHERE status IN ('pending', 'running');

CREATE TABLE events (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    work_id    BIGINT      NOT NULL REFERENCES works (id) ON DELETE CASCADE,
    work_code  TEXT        NOT NULL,
    variable   TEXT        NOT NULL,
    value      TEXT,
    created_on TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX events_work_id ON events (work_id, id);

-- The dashboard's throughput chart counts works done per 10 s over the last minutes.
CREATE INDEX works_done_updated_on ON works (updated_on) WHERE status = 'done';

-- No NOTIFY triggers: a NOTIFY inside the writing transaction serialises commits (see
-- src/storage/notify.rs). The writers notify pp_works_pending and pp_work_changes
-- after they commit.
