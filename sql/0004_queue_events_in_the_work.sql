-- Bytes per finished work. A queued demand's four events (work/created, compute/start,
-- compute/stop, compute/result) say nothing its work row does not: created and started
-- at created_on, stopped at updated_on, the result in result. Stored as four rows they
-- were three quarters of every work's bytes (about 1,000 bytes a work in all). From here
-- on a queue work keeps only the id of its first event; the four events are read through
-- the `events` view, with the same ids, times, values and order as before. Events that
-- carry more than the row (claims, failures, expiry, operators' actions, and every event
-- stored before this migration) stay rows, in `event_log`.

ALTER TABLE events RENAME TO event_log;
ALTER SEQUENCE events_id_seq RENAME TO event_log_id_seq;
-- The work's code is one join away; a copy in every event row was 20-odd bytes each.
ALTER TABLE event_log DROP COLUMN work_code;
-- Event ids come in blocks of four: a queue work takes one block for its four events;
-- a stored event uses the first id of its block.
ALTER TABLE event_log ALTER COLUMN id SET INCREMENT BY 4;

ALTER TABLE works ADD COLUMN first_event_id BIGINT;

CREATE VIEW events AS
    SELECT e.id, e.work_id, w.work_code, e.variable, e.value, e.created_on
    FROM event_log e JOIN works w ON w.id = e.work_id
  UNION ALL
    SELECT w.first_event_id + s.k, w.id, w.work_code, s.variable,
           CASE WHEN s.k = 3 THEN w.result::text END,
           CASE WHEN s.k < 2 THEN w.created_on ELSE w.updated_on END
    FROM works w
    CROSS JOIN LATERAL (VALUES (0, 'work/created'), (1, 'compute/start'),
                               (2, 'compute/stop'), (3, 'compute/result')) AS s(k, variable)
    WHERE w.first_event_id IS NOT NULL;
