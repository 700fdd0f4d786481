-- speech on sqlite, version 2: a generation per resource, for writes conditional on what was read
-- A shipped migration, frozen by tests/storage/test_shipped_migrations.py: never edit it.

ALTER TABLE resources ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
