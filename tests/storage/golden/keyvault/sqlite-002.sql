-- keyvault on sqlite, version 2: vault incarnations: an id per vault, and the id in each audit record
-- A shipped migration, frozen by tests/storage/test_shipped_migrations.py: never edit it.

ALTER TABLE vaults ADD COLUMN vault_id TEXT NOT NULL DEFAULT '';

UPDATE vaults SET vault_id = lower(hex(randomblob(16)));

ALTER TABLE audit_log ADD COLUMN vault_id TEXT NOT NULL DEFAULT '';

CREATE INDEX audit_by_vault_id ON audit_log(vault_id, sequence);
