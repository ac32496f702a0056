-- Whether a binary built before a migration keeps working against it, as the
-- migration declares (`Compat` in src/storage/migrate.rs): true for additive ones (a new
-- table, a new nullable column, a new index), false for breaking ones (a dropped or
-- renamed column, a changed meaning). A ppctl that lacks a migration's file reads this
-- to decide whether it may run. NULL for the migrations applied before the declaration
-- existed: a binary that does not know one of them must not run against it. Nullable,
-- no default: adding the column rewrites no row and holds the table for a moment only.
ALTER TABLE schema_migrations ADD COLUMN additive boolean;
