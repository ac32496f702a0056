-- ppctl: no-transaction
-- The sweepers' look-up of due scheduled works (status scheduled AND run_at <= now()),
-- and of the next run_at to wake for: only the scheduled works are in it.
CREATE INDEX CONCURRENTLY works_scheduled_run_at ON works (run_at) WHERE status = 'scheduled';
