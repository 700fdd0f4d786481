-- speech on sqlite, version 3: the intents of changes that call other services before they are recorded
-- A shipped migration, frozen by tests/storage/test_shipped_migrations.py: never edit it.

CREATE TABLE pending_steps (
                step_id INTEGER PRIMARY KEY AUTOINCREMENT,
                kind TEXT NOT NULL,
                resource_uid TEXT NOT NULL,
                resource_id TEXT NOT NULL,
                tenant_id TEXT NOT NULL,
                new_identity INTEGER NOT NULL,
                vault_name TEXT NOT NULL,
                start_time TEXT NOT NULL);
