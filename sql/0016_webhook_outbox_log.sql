-- The webhook outbox as a log: the triggers now append each delivery to
-- `webhook_outbox`, which is never updated, and one deliverer at a time walks it in
-- commit order behind a cursor. A delivery whose first attempt gets its 2xx costs one
-- narrow insert and nothing more; the cursor moves once per batch. Only a delivery
-- that needs more (a failed first attempt, a redelivery) gets a row in
-- `webhook_deliveries` under the same id, where the leased retries of 0013 go on as
-- before. 0013's path wrote three index entries and an FK check with a row lock on the
-- work when it recorded, then updated the row twice per attempt.
--
-- Commit order: a log read by id would pass an id whose transaction has not committed
-- yet and never see it. Each row carries the id of the transaction that wrote it, and a
-- reader takes only rows whose transaction is older than every one still running
-- (`pg_snapshot_xmin`), in (txid, id) order: every such transaction has ended, so no
-- row can appear later behind the cursor.
--
-- Additive: older binaries go on reading `webhook_deliveries` (where retries, failures
-- and redeliveries still live) and never this log; their listing misses the deliveries
-- that succeeded at once, and their deliverers retry what is pending there.
CREATE TABLE webhook_outbox (
    -- One id space with webhook_deliveries: the `webhook-id` of a delivery is the same
    -- in both tables.
    id          BIGINT      PRIMARY KEY DEFAULT nextval('webhook_deliveries_id_seq'),
    txid        XID8        NOT NULL DEFAULT pg_current_xact_id(),
    work_id     BIGINT      NOT NULL,
    work_status TEXT        NOT NULL,
    created_on  TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- The deliverer's walk. No foreign key to works: its check locked every finished work's
-- row. Pruning deletes by age instead (BRIN: nearly free to keep on an append-only log).
CREATE INDEX webhook_outbox_order ON webhook_outbox (txid, id);
CREATE INDEX webhook_outbox_created ON webhook_outbox USING brin (created_on);

-- Where the walk stands: every row at or before (txid, id) has had its first attempt.
-- A deliverer holds this row's lock for a whole batch, so one walks at a time.
CREATE TABLE webhook_cursor (
    only_row BOOLEAN PRIMARY KEY DEFAULT true CHECK (only_row),
    txid     XID8    NOT NULL DEFAULT '0',
    id       BIGINT  NOT NULL DEFAULT 0
);
INSERT INTO webhook_cursor (only_row) VALUES (true);

CREATE OR REPLACE FUNCTION webhook_record_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT (SELECT enabled FROM webhook_settings) THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_outbox (work_id, work_status)
    SELECT id, status FROM webhook_new_works
    WHERE status IN ('done', 'failed', 'expired', 'cancelled');
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION webhook_record_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT (SELECT enabled FROM webhook_settings) THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_outbox (work_id, work_status)
    SELECT n.id, n.status FROM webhook_new_works n JOIN webhook_old_works o USING (id)
    WHERE n.status IN ('done', 'failed', 'expired', 'cancelled') AND n.status <> o.status;
    RETURN NULL;
END $$;

-- Every delivery as the operators see it: the rows with more than one attempt as they
-- are, and the others as the cursor says (behind it: delivered at the first attempt;
-- ahead: pending). A first-attempt success keeps no time of its own.
CREATE VIEW webhook_delivery_states AS
    SELECT id, work_id, work_status, state, attempts, next_attempt, created_on,
           delivered_on, last_status, last_error
    FROM webhook_deliveries
    UNION ALL
    SELECT o.id, o.work_id, o.work_status,
           CASE WHEN (o.txid, o.id) <= (c.txid, c.id) THEN 'delivered' ELSE 'pending' END,
           CASE WHEN (o.txid, o.id) <= (c.txid, c.id) THEN 1 ELSE 0 END,
           CASE WHEN (o.txid, o.id) <= (c.txid, c.id) THEN NULL ELSE o.created_on END,
           o.created_on, NULL, NULL, NULL
    FROM webhook_outbox o CROSS JOIN webhook_cursor c
    WHERE NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.id = o.id);
