"""The key vault's schema, written once for both engines: its changes, oldest first."""

from __future__ import annotations

from cmk_trio.rpckit.storage.schema import Baseline, Change, Schema, postgres_only, sqlite_only, table

# What SQLite's versions 2 and 3 add, and PostgreSQL's tables hold from its version 1.
VAULT_ID = "vault_id TEXT NOT NULL DEFAULT ''"
RECORD_COUNT = "count INTEGER NOT NULL DEFAULT 1"
AUDIT_BY_VAULT_ID = "CREATE INDEX audit_by_vault_id ON audit_log(vault_id, sequence)"

SCHEMA = Schema(
    # PostgreSQL came when SQLite's schema was at version 3: its version 1 makes that schema at
    # once, so what versions 2 and 3 add is in version 1's tables on PostgreSQL.
    postgres_baseline=Baseline(
        3, "vaults, access policies, keys, key versions, audit log, events (as SQLite's version 3)"
    ),
    changes=(
        Change(
            1,
            "vaults, access policies, keys, key versions, audit log, events",
            (
                # Key names compare without case, as SQLite's NOCASE does.
                postgres_only(
                    "CREATE COLLATION nocase (provider = icu, locale = 'und-u-ks-level2', deterministic = false)"
                ),
                table(
                    "vaults",
                    "vault_name TEXT PRIMARY KEY",
                    "tenant_id TEXT NOT NULL",
                    "subscription_id TEXT NOT NULL",
                    "resource_group TEXT NOT NULL",
                    "location TEXT NOT NULL",
                    "soft_delete INTEGER NOT NULL",
                    "retention_days INTEGER NOT NULL",
                    "purge_protection INTEGER NOT NULL",
                    "create_time TEXT NOT NULL",
                    "update_time TEXT NOT NULL",
                    "delete_time TEXT",
                    "purge_time TEXT",
                    postgres_only(VAULT_ID),
                ),
                "CREATE INDEX vaults_by_subscription ON vaults(subscription_id, vault_name)",
                table(
                    "access_policies",
                    "vault_name TEXT NOT NULL REFERENCES vaults(vault_name) ON DELETE CASCADE",
                    "object_id TEXT NOT NULL",
                    "tenant_id TEXT NOT NULL",
                    "permissions TEXT NOT NULL",
                    "PRIMARY KEY (vault_name, object_id)",
                ),
                table(
                    "keys",
                    "vault_name TEXT NOT NULL REFERENCES vaults(vault_name) ON DELETE CASCADE",
                    "key_name TEXT NOT NULL COLLATE {nocase}",
                    "create_time TEXT NOT NULL",
                    "delete_time TEXT",
                    "purge_time TEXT",
                    "PRIMARY KEY (vault_name, key_name)",
                ),
                table(
                    "key_versions",
                    "vault_name TEXT NOT NULL",
                    "key_name TEXT NOT NULL COLLATE {nocase}",
                    "version TEXT NOT NULL",
                    "key_size INTEGER NOT NULL",
                    "key_ops TEXT NOT NULL",
                    "enabled INTEGER NOT NULL",
                    "not_before TEXT",
                    "expires TEXT",
                    "tags TEXT NOT NULL",
                    "create_time TEXT NOT NULL",
                    "update_time TEXT NOT NULL",
                    "public_jwk TEXT NOT NULL",
                    "sealed_private_key {bytes} NOT NULL",
                    # SQLite numbers every row (its rowid), which orders the versions of a key
                    # made at the same time; PostgreSQL has the column written out.
                    postgres_only("rowid BIGINT GENERATED ALWAYS AS IDENTITY"),
                    "PRIMARY KEY (vault_name, key_name, version)",
                    "FOREIGN KEY (vault_name, key_name) REFERENCES keys(vault_name, key_name) ON DELETE CASCADE",
                ),
                "CREATE INDEX key_versions_by_time ON key_versions(vault_name, key_name, create_time)",
                table(
                    "rotation_policies",
                    "vault_name TEXT NOT NULL",
                    "key_name TEXT NOT NULL COLLATE {nocase}",
                    "policy TEXT NOT NULL",
                    "update_time TEXT NOT NULL",
                    "notified_version TEXT NOT NULL DEFAULT ''",
                    "PRIMARY KEY (vault_name, key_name)",
                    "FOREIGN KEY (vault_name, key_name) REFERENCES keys(vault_name, key_name) ON DELETE CASCADE",
                ),
                table(
                    "audit_log",
                    "sequence {int64} PRIMARY KEY",
                    "time TEXT NOT NULL",
                    "request_id TEXT NOT NULL",
                    "caller_object_id TEXT NOT NULL",
                    "tenant_id TEXT NOT NULL",
                    "client_id TEXT NOT NULL",
                    "resource_id TEXT NOT NULL",
                    "operation TEXT NOT NULL",
                    "vault_name TEXT NOT NULL",
                    "key_name TEXT NOT NULL",
                    "key_version TEXT NOT NULL",
                    "result TEXT NOT NULL",
                    "reason TEXT NOT NULL",
                    "mac {bytes} NOT NULL",
                    postgres_only(VAULT_ID),
                    postgres_only(RECORD_COUNT),
                ),
                "CREATE INDEX audit_by_vault ON audit_log(vault_name, sequence)",
                postgres_only(AUDIT_BY_VAULT_ID),
                table(
                    "audit_checkpoints",
                    "count {int64} PRIMARY KEY",
                    "head_mac {bytes} NOT NULL",
                    "time TEXT NOT NULL",
                    "signature {bytes} NOT NULL",
                ),
                table(
                    "service_keys",
                    "name TEXT PRIMARY KEY",
                    "public_key {bytes} NOT NULL",
                    "sealed_private_key {bytes} NOT NULL",
                ),
                table(
                    "events",
                    "sequence {int64} PRIMARY KEY",
                    "type INTEGER NOT NULL",
                    "time TEXT NOT NULL",
                    "vault_name TEXT NOT NULL DEFAULT ''",
                    "key_name TEXT NOT NULL DEFAULT ''",
                    "version TEXT NOT NULL DEFAULT ''",
                    "object_id TEXT NOT NULL DEFAULT ''",
                ),
            ),
        ),
        Change(
            2,
            "vault incarnations: an id per vault, and the id in each audit record",
            (
                sqlite_only(f"ALTER TABLE vaults ADD COLUMN {VAULT_ID}"),
                # The vaults made before this change get an id each (PostgreSQL's began with one).
                sqlite_only("UPDATE vaults SET vault_id = lower(hex(randomblob(16)))"),
                sqlite_only(f"ALTER TABLE audit_log ADD COLUMN {VAULT_ID}"),
                sqlite_only(AUDIT_BY_VAULT_ID),
            ),
        ),
        Change(
            3,
            "how many calls an audit record stands for (unauthenticated refusals, in aggregate)",
            (sqlite_only(f"ALTER TABLE audit_log ADD COLUMN {RECORD_COUNT}"),),
        ),
        Change(
            4,
            "EC keys: the curve of a key version (empty for RSA)",
            ("ALTER TABLE key_versions ADD COLUMN curve TEXT NOT NULL DEFAULT ''",),
        ),
        Change(
            5,
            "secrets and their versions (values sealed), and secret permissions in access policies",
            (
                "ALTER TABLE access_policies ADD COLUMN secret_permissions TEXT NOT NULL DEFAULT ''",
                table(
                    "secrets",
                    "vault_name TEXT NOT NULL REFERENCES vaults(vault_name) ON DELETE CASCADE",
                    "secret_name TEXT NOT NULL COLLATE {nocase}",
                    "create_time TEXT NOT NULL",
                    "delete_time TEXT",
                    "purge_time TEXT",
                    "PRIMARY KEY (vault_name, secret_name)",
                ),
                table(
                    "secret_versions",
                    "vault_name TEXT NOT NULL",
                    "secret_name TEXT NOT NULL COLLATE {nocase}",
                    "version TEXT NOT NULL",
                    "content_type TEXT NOT NULL",
                    "enabled INTEGER NOT NULL",
                    "not_before TEXT",
                    "expires TEXT",
                    "tags TEXT NOT NULL",
                    "create_time TEXT NOT NULL",
                    "update_time TEXT NOT NULL",
                    "sealed_value {bytes} NOT NULL",
                    "seq {auto_key}",
                    "UNIQUE (vault_name, secret_name, version)",
                    "FOREIGN KEY (vault_name, secret_name) REFERENCES secrets(vault_name, secret_name)"
                    " ON DELETE CASCADE",
                ),
                "CREATE INDEX secret_versions_by_time ON secret_versions(vault_name, secret_name, create_time)",
            ),
        ),
        Change(
            6,
            "a vault's pricing tier and tags (Azure Resource Manager's)",
            (
                "ALTER TABLE vaults ADD COLUMN sku TEXT NOT NULL DEFAULT 'standard'",
                # (the statements are formatted, {bytes} and the like: "{{}}" is written "{}")
                "ALTER TABLE vaults ADD COLUMN tags TEXT NOT NULL DEFAULT '{{}}'",
            ),
        ),
    ),
)
