-- work_code had two indexes: the UNIQUE constraint's (default collation) and the
-- text_pattern_ops one for prefix search. One unique text_pattern_ops index does both
-- (its equality is byte-wise, as the collation's is for these codes): one random-order
-- index fewer to update per insert, about 50 bytes per work fewer to store.
CREATE UNIQUE INDEX works_work_code_unique ON works (work_code text_pattern_ops);
ALTER TABLE works DROP CONSTRAINT works_work_code_key;
DROP INDEX works_work_code_prefix;
