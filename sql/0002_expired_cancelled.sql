-- Two terminal statuses: `expired`, an API work nobody finished within the sweep
-- window (so it is not pending forever, unnoticed), and `cancelled`, by an operator.
-- Rows are kept; only the CHECK changes.
ALTER TABLE works DROP CONSTRAINT works_status_check;
ALTER TABLE works ADD CONSTRAINT works_status_check
    CHECK (status IN ('pending', 'running', 'done', 'failed', 'expired', 'cancelled'));
