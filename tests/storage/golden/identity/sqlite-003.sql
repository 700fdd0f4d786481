-- identity on sqlite, version 3: client secrets that name their own id (a sign-in checks one hash); older ones marked unnamed
-- A shipped migration, frozen by tests/storage/test_shipped_migrations.py: never edit it.

ALTER TABLE client_secrets ADD COLUMN named INTEGER NOT NULL DEFAULT 0;
