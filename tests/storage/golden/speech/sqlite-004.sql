-- speech on sqlite, version 4: the replica that recorded each intent (one still running is not to be undone)
-- A shipped migration, frozen by tests/storage/test_shipped_migrations.py: never edit it.

ALTER TABLE pending_steps ADD COLUMN owner TEXT NOT NULL DEFAULT '';
