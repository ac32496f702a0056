-- Failed, expired and cancelled works are kept, like done ones, until pruned: they grow
-- with the history too, so they get running totals beside `done` (pending and running
-- stay counted live: they are the works in flight). Started from the rows there are.
ALTER TABLE work_counts
    ADD COLUMN failed    BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN expired   BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN cancelled BIGINT NOT NULL DEFAULT 0;
UPDATE work_counts SET
    failed    = (SELECT count(*) FROM works WHERE status = 'failed'),
    expired   = (SELECT count(*) FROM works WHERE status = 'expired'),
    cancelled = (SELECT count(*) FROM works WHERE status = 'cancelled')
WHERE shard = 0;
