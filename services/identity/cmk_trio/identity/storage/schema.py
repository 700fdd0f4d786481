"""The identity service's schema, written once for both engines: its changes, oldest first."""

from __future__ import annotations

from cmk_trio.rpckit.storage.schema import Baseline, Change, Schema, table

SCHEMA = Schema(
    # PostgreSQL came with SQLite's version 1: the engines have run the same changes since.
    postgres_baseline=Baseline(1, "directory, credentials, roles, signing keys, events (as SQLite's version 1)"),
    changes=(
        Change(
            1,
            "directory, credentials, roles, signing keys, events",
            (
                table(
                    "tenants",
                    "tenant_id TEXT PRIMARY KEY",
                    "display_name TEXT NOT NULL",
                    "platform INTEGER NOT NULL DEFAULT 0",
                    "create_time TEXT NOT NULL",
                ),
                table(
                    "subscriptions",
                    "subscription_id TEXT PRIMARY KEY",
                    "tenant_id TEXT NOT NULL REFERENCES tenants(tenant_id)",
                    "display_name TEXT NOT NULL",
                    "create_time TEXT NOT NULL",
                    "transfer_time TEXT",
                ),
                "CREATE INDEX subscriptions_by_tenant ON subscriptions(tenant_id, subscription_id)",
                table(
                    "principals",
                    "object_id TEXT PRIMARY KEY",
                    "tenant_id TEXT NOT NULL REFERENCES tenants(tenant_id)",
                    "kind INTEGER NOT NULL",
                    "display_name TEXT NOT NULL",
                    "client_id TEXT NOT NULL UNIQUE",
                    "enabled INTEGER NOT NULL",
                    "resource_id TEXT NOT NULL DEFAULT ''",
                    "resource_key TEXT UNIQUE",
                    "owner_object_id TEXT NOT NULL DEFAULT ''",
                    "platform_service TEXT NOT NULL DEFAULT ''",
                    "tenant_admin INTEGER NOT NULL DEFAULT 0",
                    "operator INTEGER NOT NULL DEFAULT 0",
                    "create_time TEXT NOT NULL",
                    "update_time TEXT NOT NULL",
                ),
                "CREATE INDEX principals_by_tenant ON principals(tenant_id, object_id)",
                table(
                    "client_secrets",
                    "secret_id TEXT PRIMARY KEY",
                    "object_id TEXT NOT NULL REFERENCES principals(object_id) ON DELETE CASCADE",
                    "display_name TEXT NOT NULL",
                    "hash TEXT NOT NULL",
                    "create_time TEXT NOT NULL",
                    "expire_time TEXT NOT NULL",
                ),
                "CREATE INDEX client_secrets_by_principal ON client_secrets(object_id, secret_id)",
                table(
                    "role_assignments",
                    "role_assignment_id TEXT PRIMARY KEY",
                    "principal_id TEXT NOT NULL REFERENCES principals(object_id) ON DELETE CASCADE",
                    "role INTEGER NOT NULL",
                    "scope TEXT NOT NULL",
                    "scope_key TEXT NOT NULL",
                    "subscription_id TEXT NOT NULL REFERENCES subscriptions(subscription_id)",
                    "tenant_id TEXT NOT NULL",
                    "create_time TEXT NOT NULL",
                    "created_by TEXT NOT NULL",
                    "UNIQUE (principal_id, role, scope_key)",
                ),
                "CREATE INDEX role_assignments_by_principal ON role_assignments(principal_id)",
                "CREATE INDEX role_assignments_by_subscription ON role_assignments(subscription_id)",
                table(
                    "signing_keys",
                    "kid TEXT PRIMARY KEY",
                    "public_jwk TEXT NOT NULL",
                    "sealed_private_key {bytes} NOT NULL",
                    "active INTEGER NOT NULL",
                    "create_time TEXT NOT NULL",
                    "retire_time TEXT",
                ),
                table(
                    "events",
                    "sequence {int64} PRIMARY KEY",
                    "type INTEGER NOT NULL",
                    "time TEXT NOT NULL",
                    "tenant_id TEXT NOT NULL DEFAULT ''",
                    "principal_id TEXT NOT NULL DEFAULT ''",
                    "subscription_id TEXT NOT NULL DEFAULT ''",
                    "new_tenant_id TEXT NOT NULL DEFAULT ''",
                    "kid TEXT NOT NULL DEFAULT ''",
                    "scope TEXT NOT NULL DEFAULT ''",
                ),
            ),
        ),
        Change(
            2,
            "failed sign-ins per client id, counted by every replica together",
            (
                table(
                    "sign_in_failures",
                    "tenant_id TEXT NOT NULL",
                    "client_id TEXT NOT NULL",
                    "first_time TEXT NOT NULL",
                    "last_time TEXT NOT NULL",
                    "count INTEGER NOT NULL",
                    "PRIMARY KEY (tenant_id, client_id)",
                ),
                "CREATE INDEX sign_in_failures_by_time ON sign_in_failures(first_time)",
            ),
        ),
        Change(
            3,
            "client secrets that name their own id (a sign-in checks one hash); older ones marked unnamed",
            ("ALTER TABLE client_secrets ADD COLUMN named INTEGER NOT NULL DEFAULT 0",),
        ),
    ),
)
