-- keyvault on sqlite, version 4: EC keys: the curve of a key version (empty for RSA)
-- A shipped migration, frozen by tests/storage/test_shipped_migrations.py: never edit it.

ALTER TABLE key_versions ADD COLUMN curve TEXT NOT NULL DEFAULT '';
