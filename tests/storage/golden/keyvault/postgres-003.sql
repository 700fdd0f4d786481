-- keyvault on postgres, version 3: secrets and their versions (values sealed), and secret permissions in access policies
-- A shipped migration, frozen by tests/storage/test_shipped_migrations.py: never edit it.

ALTER TABLE access_policies ADD COLUMN secret_permissions TEXT NOT NULL DEFAULT '';

CREATE TABLE secrets (
                vault_name TEXT NOT NULL REFERENCES vaults(vault_name) ON DELETE CASCADE,
                secret_name TEXT NOT NULL COLLATE nocase,
                create_time TEXT NOT NULL,
                delete_time TEXT,
                purge_time TEXT,
                PRIMARY KEY (vault_name, secret_name));

CREATE TABLE secret_versions (
                vault_name TEXT NOT NULL,
                secret_name TEXT NOT NULL COLLATE nocase,
                version TEXT NOT NULL,
                content_type TEXT NOT NULL,
                enabled INTEGER NOT NULL,
                not_before TEXT,
                expires TEXT,
                tags TEXT NOT NULL,
                create_time TEXT NOT NULL,
                update_time TEXT NOT NULL,
                sealed_value BYTEA NOT NULL,
                seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                UNIQUE (vault_name, secret_name, version),
                FOREIGN KEY (vault_name, secret_name) REFERENCES secrets(vault_name, secret_name) ON DELETE CASCADE);

CREATE INDEX secret_versions_by_time ON secret_versions(vault_name, secret_name, create_time);
