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

-- Wakes sweepers when a pending work is committed. One payload-less notification per
-- transaction: Postgres folds identical notifications, so a bulk insert sends one.
CREATE FUNCTION works_notify_pending() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pp_works_pending', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER works_pending_notify
    AFTER INSERT ON works
    FOR EACH ROW WHEN (NEW.status = 'pending')
    EXECUTE FUNCTION works_notify_pending();
