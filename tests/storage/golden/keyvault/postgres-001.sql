-- keyvault on postgres, version 1: vaults, access policies, keys, key versions, audit log, events (as SQLite's version 3)
-- A shipped migration, frozen by tests/storage/test_shipped_migrations.py: never edit it.

CREATE COLLATION nocase (provider = icu, locale = 'und-u-ks-level2', deterministic = false);

CREATE TABLE vaults (
                vault_name TEXT PRIMARY KEY,
                tenant_id TEXT NOT NULL,
                subscription_id TEXT NOT NULL,
                resource_group TEXT NOT NULL,
                location TEXT NOT NULL,
                soft_delete INTEGER NOT NULL,
                retention_days INTEGER NOT NULL,
                purge_protection INTEGER NOT NULL,
                create_time TEXT NOT NULL,
                update_time TEXT NOT NULL,
                delete_time TEXT,
                purge_time TEXT,
                vault_id TEXT NOT NULL DEFAULT '');

CREATE INDEX vaults_by_subscription ON vaults(subscription_id, vault_name);

CREATE TABLE access_policies (
                vault_name TEXT NOT NULL REFERENCES vaults(vault_name) ON DELETE CASCADE,
                object_id TEXT NOT NULL,
                tenant_id TEXT NOT NULL,
                permissions TEXT NOT NULL,
                PRIMARY KEY (vault_name, object_id));

CREATE TABLE keys (
                vault_name TEXT NOT NULL REFERENCES vaults(vault_name) ON DELETE CASCADE,
                key_name TEXT NOT NULL COLLATE nocase,
                create_time TEXT NOT NULL,
                delete_time TEXT,
                purge_time TEXT,
                PRIMARY KEY (vault_name, key_name));

CREATE TABLE key_versions (
                vault_name TEXT NOT NULL,
                key_name TEXT NOT NULL COLLATE nocase,
                version TEXT NOT NULL,
                key_size INTEGER NOT NULL,
                key_ops TEXT NOT NULL,
                enabled INTEGER NOT NULL,
                not_before TEXT,
                expires TEXT,
                tags TEXT NOT NULL,
                create_time TEXT NOT NULL,
                update_time TEXT NOT NULL,
                public_jwk TEXT NOT NULL,
                sealed_private_key BYTEA NOT NULL,
                rowid BIGINT GENERATED ALWAYS AS IDENTITY,
                PRIMARY KEY (vault_name, key_name, version),
                FOREIGN KEY (vault_name, key_name) REFERENCES keys(vault_name, key_name) ON DELETE CASCADE);

CREATE INDEX key_versions_by_time ON key_versions(vault_name, key_name, create_time);

CREATE TABLE rotation_policies (
                vault_name TEXT NOT NULL,
                key_name TEXT NOT NULL COLLATE nocase,
                policy TEXT NOT NULL,
                update_time TEXT NOT NULL,
                notified_version TEXT NOT NULL DEFAULT '',
                PRIMARY KEY (vault_name, key_name),
                FOREIGN KEY (vault_name, key_name) REFERENCES keys(vault_name, key_name) ON DELETE CASCADE);

CREATE TABLE audit_log (
                sequence BIGINT PRIMARY KEY,
                time TEXT NOT NULL,
                request_id TEXT NOT NULL,
                caller_object_id TEXT NOT NULL,
                tenant_id TEXT NOT NULL,
                client_id TEXT NOT NULL,
                resource_id TEXT NOT NULL,
                operation TEXT NOT NULL,
                vault_name TEXT NOT NULL,
                key_name TEXT NOT NULL,
                key_version TEXT NOT NULL,
                result TEXT NOT NULL,
                reason TEXT NOT NULL,
                mac BYTEA NOT NULL,
                vault_id TEXT NOT NULL DEFAULT '',
                count INTEGER NOT NULL DEFAULT 1);

CREATE INDEX audit_by_vault ON audit_log(vault_name, sequence);

CREATE INDEX audit_by_vault_id ON audit_log(vault_id, sequence);

CREATE TABLE audit_checkpoints (
                count BIGINT PRIMARY KEY,
                head_mac BYTEA NOT NULL,
                time TEXT NOT NULL,
                signature BYTEA NOT NULL);

CREATE TABLE service_keys (
                name TEXT PRIMARY KEY,
                public_key BYTEA NOT NULL,
                sealed_private_key BYTEA NOT NULL);

CREATE TABLE events (
                sequence BIGINT PRIMARY KEY,
                type INTEGER NOT NULL,
                time TEXT NOT NULL,
                vault_name TEXT NOT NULL DEFAULT '',
                key_name TEXT NOT NULL DEFAULT '',
                version TEXT NOT NULL DEFAULT '',
                object_id TEXT NOT NULL DEFAULT '');
