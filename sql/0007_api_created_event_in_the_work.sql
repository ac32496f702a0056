-- Rows per API work. POST /works wrote two rows: the pending work and its work/created
-- event, whose time is the work's created_on and which carries no value: nothing the
-- row does not say. From here on a new API work keeps the id of that event in
-- first_event_id (one block of four ids, as a queue work) and the view reads the event
-- from the row; its later events (claims, results, failures, operators' actions) stay
-- rows in event_log with later ids, so the order is unchanged. A queue work (it has a
-- message_id) still reads all four of its events from its row. API works stored before
-- this migration keep their work/created row and no first_event_id.

CREATE OR REPLACE VIEW events AS
    SELECT e.id, e.work_id, w.work_code, e.variable, e.value, e.created_on
    FROM event_log e JOIN works w ON w.id = e.work_id
  UNION ALL
    SELECT w.first_event_id + s.k, w.id, w.work_code, s.variable,
           CASE WHEN s.k = 3 THEN w.result::text END,
           CASE WHEN s.k < 2 THEN w.created_on ELSE w.updated_on END
    FROM works w
    CROSS JOIN LATERAL (VALUES (0, 'work/created'), (1, 'compute/start'),
                               (2, 'compute/stop'), (3, 'compute/result')) AS s(k, variable)
    WHERE w.first_event_id IS NOT NULL AND (s.k = 0 OR w.message_id IS NOT NULL);
