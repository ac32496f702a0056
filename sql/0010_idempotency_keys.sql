-- The Idempotency-Key of POST /works and POST /work (IETF httpapi draft; Stripe's API).
-- A table of its own rather than a column of works: a unique column on works needs a
-- unique index over the whole history, which CREATE INDEX builds under a lock that
-- stops every write to works for as long as the build takes (and CONCURRENTLY cannot
-- run inside a migration's transaction). This table is new and empty: its index costs
-- nothing, and its foreign key holds works only for an instant (a SHARE ROW EXCLUSIVE
-- lock to add the trigger; no row to check). Additive: a binary that predates it never
-- reads it, and the works it creates simply have no key.
-- A key lives as long as its work: the pruner's DELETE removes it by the cascade, which
-- the index on work_id makes a lookup.
CREATE TABLE idempotency_keys (
    key         TEXT        PRIMARY KEY,
    -- What the request asked for, so that a key reused for another request is refused.
    fingerprint TEXT        NOT NULL,
    work_id     BIGINT      NOT NULL REFERENCES works (id) ON DELETE CASCADE,
    stored_on   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX idempotency_keys_work_id ON idempotency_keys (work_id);
