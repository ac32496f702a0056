-- Live updates for the dashboard (`GET /works/stream`): one notification on
-- pp_work_changes after every statement that inserts works or changes their status.
--
-- Statement-level with transition tables, not row-level: the consumer inserts thousands
-- of works per statement, and row-level payloads differ by id, so Postgres could not
-- fold them into one. Payload: {"id": the highest id touched, "status": the status when
-- every touched row has the same one, else null, "count": rows touched}; for a one-row
-- statement that is the row's id and status.
--
-- Transition tables cannot be combined with a column list (UPDATE OF status), so the
-- update trigger compares old and new rows itself and stays silent when no status moved.
CREATE FUNCTION works_notify_changes() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    touched bigint;
    top_id bigint;
    low_status text;
    high_status text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT count(*), max(id), min(status), max(status)
          INTO touched, top_id, low_status, high_status
          FROM new_rows;
    ELSE
        SELECT count(*), max(nw.id), min(nw.status), max(nw.status)
          INTO touched, top_id, low_status, high_status
          FROM new_rows nw JOIN old_rows od ON od.id = nw.id
         WHERE nw.status IS DISTINCT FROM od.status;
    END IF;
    IF touched > 0 THEN
        PERFORM pg_notify('pp_work_changes', json_build_object(
            'id', top_id,
            'status', CASE WHEN low_status = high_status THEN low_status END,
            'count', touched)::text);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER works_changes_insert
    AFTER INSERT ON works
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION works_notify_changes();

CREATE TRIGGER works_changes_update
    AFTER UPDATE ON works
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION works_notify_changes();

-- The dashboard's throughput chart counts works done per 10 s over the last minutes;
-- without this it would scan the whole table every few seconds.
CREATE INDEX works_done_updated_on ON works (updated_on) WHERE status = 'done';
