-- keyvault on postgres, version 4: a vault's pricing tier and tags (Azure Resource Manager's)
-- A shipped migration, frozen by tests/storage/test_shipped_migrations.py: never edit it.

ALTER TABLE vaults ADD COLUMN sku TEXT NOT NULL DEFAULT 'standard';

ALTER TABLE vaults ADD COLUMN tags TEXT NOT NULL DEFAULT '{}';
