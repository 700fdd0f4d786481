-- identity on postgres, version 2: failed sign-ins per client id, counted by every replica together
-- A shipped migration, frozen by tests/storage/test_shipped_migrations.py: never edit it.

CREATE TABLE sign_in_failures (
                tenant_id TEXT NOT NULL,
                client_id TEXT NOT NULL,
                first_time TEXT NOT NULL,
                last_time TEXT NOT NULL,
                count INTEGER NOT NULL,
                PRIMARY KEY (tenant_id, client_id));

CREATE INDEX sign_in_failures_by_time ON sign_in_failures(first_time);
