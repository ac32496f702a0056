-- ppctl: no-transaction
-- The status CHECK of migration 0012, added NOT VALID, validated on its own: the scan
-- holds SHARE UPDATE EXCLUSIVE, which blocks neither reads nor writes of works.
ALTER TABLE works VALIDATE CONSTRAINT works_status_scheduled_check;
