-- Reads that cost the same whatever the size of the history.
--
-- Every status but `done` is a small set: one partial index serves both their exact
-- counts (an index-only scan) and the status filter of the search.
CREATE INDEX works_not_done ON works (status, id) WHERE status <> 'done';
-- It also serves the sweepers' claims, which works_claimable served: one index fewer.
DROP INDEX works_claimable;

-- `done` is the history itself: its count is a running total kept by the writers in
-- the transaction that makes works done (or prunes them). Spread over 16 rows, picked
-- at random per transaction, so concurrent writers do not queue on one hot row.
CREATE TABLE work_counts (
    shard SMALLINT PRIMARY KEY CHECK (shard BETWEEN 0 AND 15),
    done  BIGINT   NOT NULL DEFAULT 0
);
INSERT INTO work_counts (shard) SELECT generate_series(0, 15);
UPDATE work_counts SET done = (SELECT count(*) FROM works WHERE status = 'done') WHERE shard = 0;
