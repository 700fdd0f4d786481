"""The speech service's schema, written once for both engines: its changes, oldest first."""

from __future__ import annotations

from cmk_trio.rpckit.storage.schema import Baseline, Change, Schema, postgres_only, sqlite_only, table

# What SQLite's versions 2 and 4 add, and PostgreSQL's tables hold from its version 1.
GENERATION = "generation {int64} NOT NULL DEFAULT 0"
OWNER = "owner TEXT NOT NULL DEFAULT ''"

SCHEMA = Schema(
    # PostgreSQL came when SQLite's schema was at version 4: its version 1 makes that schema at
    # once, so what versions 2 and 4 add is in its tables from the start.
    postgres_baseline=Baseline(
        4, "resources, CMK approvals, applications, LUIS keys, pending steps (as SQLite's version 4)"
    ),
    changes=(
        Change(
            1,
            "resources, CMK approvals, applications, LUIS keys",
            (
                table(
                    "resources",
                    "uid TEXT PRIMARY KEY",
                    "resource_key TEXT NOT NULL UNIQUE",
                    "resource_id TEXT NOT NULL",
                    "subscription_id TEXT NOT NULL",
                    "resource_group TEXT NOT NULL",
                    "account_name TEXT NOT NULL",
                    "location TEXT NOT NULL",
                    "tier TEXT NOT NULL",
                    "create_time TEXT NOT NULL",
                    "tenant_id TEXT NOT NULL",
                    "key_source TEXT NOT NULL",
                    "wrapping_key TEXT NOT NULL",
                    "wrapped_data_key {bytes} NOT NULL",
                    "identity_principal_id TEXT NOT NULL DEFAULT ''",
                    "identity_tenant_id TEXT NOT NULL DEFAULT ''",
                    "key_uri TEXT NOT NULL DEFAULT ''",
                    "follow_latest INTEGER NOT NULL DEFAULT 0",
                    postgres_only(GENERATION),
                ),
                "CREATE INDEX resources_by_subscription ON resources(subscription_id, resource_key)",
                table(
                    "cmk_approvals",
                    "subscription_id TEXT PRIMARY KEY",
                    "state TEXT NOT NULL",
                    "request_time TEXT NOT NULL",
                    "requested_by TEXT NOT NULL",
                    "decision_time TEXT",
                    "note TEXT NOT NULL DEFAULT ''",
                ),
                table(
                    "applications",
                    "seq {auto_key}",
                    "resource_uid TEXT NOT NULL REFERENCES resources(uid) ON DELETE CASCADE",
                    "application_id TEXT NOT NULL",
                    "display_name TEXT NOT NULL",
                    "version {int64} NOT NULL",
                    "sealed_configuration {bytes} NOT NULL",
                    "create_time TEXT NOT NULL",
                    "update_time TEXT NOT NULL",
                    "UNIQUE (resource_uid, application_id)",
                ),
                table(
                    "luis_keys",
                    "resource_uid TEXT PRIMARY KEY REFERENCES resources(uid) ON DELETE CASCADE",
                    "version {int64} NOT NULL",
                    "sealed {bytes} NOT NULL",
                    "update_time TEXT NOT NULL",
                ),
            ),
        ),
        Change(
            2,
            "a generation per resource, for writes conditional on what was read",
            (sqlite_only(f"ALTER TABLE resources ADD COLUMN {GENERATION}"),),
        ),
        Change(
            3,
            "the intents of changes that call other services before they are recorded",
            (
                table(
                    "pending_steps",
                    "step_id {auto_key}",
                    "kind TEXT NOT NULL",
                    "resource_uid TEXT NOT NULL",
                    "resource_id TEXT NOT NULL",
                    "tenant_id TEXT NOT NULL",
                    "new_identity INTEGER NOT NULL",
                    "vault_name TEXT NOT NULL",
                    "start_time TEXT NOT NULL",
                    postgres_only(OWNER),
                ),
            ),
        ),
        Change(
            4,
            "the replica that recorded each intent (one still running is not to be undone)",
            (sqlite_only(f"ALTER TABLE pending_steps ADD COLUMN {OWNER}"),),
        ),
    ),
)
