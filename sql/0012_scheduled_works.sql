-- Works that run later (a demand's run_at or delay) and works on a schedule. Additive:
-- a binary that predates it never writes `scheduled`, never reads run_at or the two
-- tables, and the CHECK only grows.
-- A scheduled work waits with status `scheduled` until run_at, then a sweeper claims it.
-- Nullable, no default: no table rewrite.
ALTER TABLE works ADD COLUMN run_at TIMESTAMPTZ;
-- The status CHECK grows by `scheduled`: added NOT VALID (no scan under the lock), the
-- old one dropped; migration 0014 validates it in a transaction of its own (a scan
-- under SHARE UPDATE EXCLUSIVE only, which blocks no reader or writer).
ALTER TABLE works ADD CONSTRAINT works_status_scheduled_check
    CHECK (status IN ('pending', 'running', 'done', 'failed', 'expired', 'cancelled', 'scheduled'))
    NOT VALID;
-- The old CHECK is a stricter copy of the new one: dropping it removes no guarantee.
-- squawk-ignore ban-drop-constraint
ALTER TABLE works DROP CONSTRAINT works_status_check;
-- Periodic schedules (`ppctl schedule add`): each occurrence (slot) becomes one pending
-- work, inserted by whichever consumer holds the schedule's row lock.
CREATE TABLE schedules (
    name        TEXT        PRIMARY KEY,
    -- Exactly one of: a fixed interval in seconds, a cron expression (UTC).
    every_secs  BIGINT      CHECK (every_secs > 0),
    cron        TEXT,
    add_up_to   BIGINT      NOT NULL CHECK (add_up_to BETWEEN 0 AND 4294967295),
    created_on  TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The last slot a work was inserted for: the next one is computed from it.
    last_slot   TIMESTAMPTZ,
    CHECK ((every_secs IS NULL) <> (cron IS NULL))
);
-- One row per (schedule, slot): the unique key that makes a slot's work exactly one,
-- whatever number of consumers race for it. A table of its own rather than a unique
-- index on works (10M rows: a unique index built under a lock); the work it made is
-- pruned with its row (ON DELETE SET NULL keeps the slot's record).
CREATE TABLE schedule_runs (
    name     TEXT        NOT NULL,
    slot     TIMESTAMPTZ NOT NULL,
    work_id  BIGINT      REFERENCES works (id) ON DELETE SET NULL,
    PRIMARY KEY (name, slot)
);
CREATE INDEX schedule_runs_work_id ON schedule_runs (work_id);
