-- The webhook outbox: one delivery per work that reaches done, failed, expired or
-- cancelled, recorded by triggers in the transaction that changes the status, so that
-- no path (the consumer's batch insert, the sweeper, expiry, an operator's cancel, a
-- bulk action, a scheduled work cancelled) and no crash can finish a work without its
-- delivery. Statement-level triggers with transition tables: one call per statement,
-- whatever its size, where a row-level trigger would run once per finished work.
--
-- Whether deliveries are recorded is one row in the database, not a setting of the
-- process that changes the status (`serve` cancels works and knows no webhook URL):
-- `consume --webhook-url` turns it on at start, `ppctl webhook disable` turns it off.
-- Off (the default), the triggers return at once and nothing is written.
--
-- Additive: binaries that predate it never read these tables, and the triggers work
-- under them unchanged. New tables are empty: their indexes cost nothing, and the
-- foreign key and the triggers hold works for an instant (SHARE ROW EXCLUSIVE).
CREATE TABLE webhook_settings (
    only_row BOOLEAN PRIMARY KEY DEFAULT true CHECK (only_row),
    enabled  BOOLEAN NOT NULL DEFAULT false,
    -- The `webhook-id` of a delivery is `msg_<id_prefix>_<id>`: the same on every
    -- attempt and redelivery, and unique across databases (a receiver deduplicates on
    -- it), without a random value computed and stored per delivery.
    id_prefix TEXT   NOT NULL DEFAULT substr(md5(random()::text || clock_timestamp()::text), 1, 12)
);
INSERT INTO webhook_settings (only_row) VALUES (true);

CREATE TABLE webhook_deliveries (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The work is pruned with its deliveries (the index below makes that a lookup).
    work_id      BIGINT      NOT NULL REFERENCES works (id) ON DELETE CASCADE,
    -- The status the work reached, which this delivery announces.
    work_status  TEXT        NOT NULL,
    state        TEXT        NOT NULL DEFAULT 'pending'
                             CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts     BIGINT      NOT NULL DEFAULT 0,
    -- When the next attempt is due; while an attempt runs, the end of its claim (a
    -- killed deliverer's claim is taken again once it passes).
    next_attempt TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Retries stop (`failed`) once this is older than the retry period; a redelivery
    -- starts it again.
    retry_from   TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_on   TIMESTAMPTZ NOT NULL DEFAULT now(),
    delivered_on TIMESTAMPTZ,
    -- What the receiver answered last (HTTP status), or why there was no answer.
    last_status  BIGINT,
    last_error   TEXT
);
CREATE INDEX webhook_deliveries_work_id ON webhook_deliveries (work_id);
-- The deliverers' claims: only the pending ones, however long the history.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt) WHERE state = 'pending';
-- Listings of the failed ones, newest first (the pending ones are read through the
-- index above, the delivered ones are most of the table). Partial: an insert, always
-- pending, does not touch it.
CREATE INDEX webhook_deliveries_failed ON webhook_deliveries (id) WHERE state = 'failed';

CREATE FUNCTION webhook_record_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT (SELECT enabled FROM webhook_settings) THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_deliveries (work_id, work_status)
    SELECT id, status FROM webhook_new_works
    WHERE status IN ('done', 'failed', 'expired', 'cancelled');
    RETURN NULL;
END $$;

CREATE FUNCTION webhook_record_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT (SELECT enabled FROM webhook_settings) THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_deliveries (work_id, work_status)
    SELECT n.id, n.status FROM webhook_new_works n JOIN webhook_old_works o USING (id)
    WHERE n.status IN ('done', 'failed', 'expired', 'cancelled') AND n.status <> o.status;
    RETURN NULL;
END $$;

CREATE TRIGGER webhook_works_inserted AFTER INSERT ON works
    REFERENCING NEW TABLE AS webhook_new_works
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_record_inserted();
CREATE TRIGGER webhook_works_updated AFTER UPDATE ON works
    REFERENCING OLD TABLE AS webhook_old_works NEW TABLE AS webhook_new_works
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_record_updated();
