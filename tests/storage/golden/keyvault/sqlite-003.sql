-- keyvault on sqlite, version 3: how many calls an audit record stands for (unauthenticated refusals, in aggregate)
-- A shipped migration, frozen by tests/storage/test_shipped_migrations.py: never edit it.

ALTER TABLE audit_log ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
