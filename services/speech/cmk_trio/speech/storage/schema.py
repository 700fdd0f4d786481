"""The speech service's schema on each engine: the migrations, oldest first."""

from __future__ import annotations

from cmk_trio.rpckit.storage import Migration

MIGRATIONS = (
    Migration(
        1,
        "resources, CMK approvals, applications, LUIS keys",
        (
            """CREATE TABLE resources (
                uid TEXT PRIMARY KEY,
                resource_key TEXT NOT NULL UNIQUE,
                resource_id TEXT NOT NULL,
                subscription_id TEXT NOT NULL,
                resource_group TEXT NOT NULL,
                account_name TEXT NOT NULL,
                location TEXT NOT NULL,
                tier TEXT NOT NULL,
                create_time TEXT NOT NULL,
                tenant_id TEXT NOT NULL,
                key_source TEXT NOT NULL,
                wrapping_key TEXT NOT NULL,
                wrapped_data_key BLOB NOT NULL,
                identity_principal_id TEXT NOT NULL DEFAULT '',
                identity_tenant_id TEXT NOT NULL DEFAULT '',
                key_uri TEXT NOT NULL DEFAULT '',
                follow_latest INTEGER NOT NULL DEFAULT 0)""",
            "CREATE INDEX resources_by_subscription ON resources(subscription_id, resource_key)",
            """CREATE TABLE cmk_approvals (
                subscription_id TEXT PRIMARY KEY,
                state TEXT NOT NULL,
                request_time TEXT NOT NULL,
                requested_by TEXT NOT NULL,
                decision_time TEXT,
                note TEXT NOT NULL DEFAULT '')""",
            """CREATE TABLE applications (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                resource_uid TEXT NOT NULL REFERENCES resources(uid) ON DELETE CASCADE,
                application_id TEXT NOT NULL,
                display_name TEXT NOT NULL,
                version INTEGER NOT NULL,
                sealed_configuration BLOB NOT NULL,
                create_time TEXT NOT NULL,
                update_time TEXT NOT NULL,
                UNIQUE (resource_uid, application_id))""",
            """CREATE TABLE luis_keys (
                resource_uid TEXT PRIMARY KEY REFERENCES resources(uid) ON DELETE CASCADE,
                version INTEGER NOT NULL,
                sealed BLOB NOT NULL,
                update_time TEXT NOT NULL)""",
        ),
    ),
    Migration(
        2,
        "a generation per resource, for writes conditional on what was read",
        ("ALTER TABLE resources ADD COLUMN generation INTEGER NOT NULL DEFAULT 0",),
    ),
    Migration(
        3,
        "the intents of changes that call other services before they are recorded",
        (
            """CREATE TABLE pending_steps (
                step_id INTEGER PRIMARY KEY AUTOINCREMENT,
                kind TEXT NOT NULL,
                resource_uid TEXT NOT NULL,
                resource_id TEXT NOT NULL,
                tenant_id TEXT NOT NULL,
                new_identity INTEGER NOT NULL,
                vault_name TEXT NOT NULL,
                start_time TEXT NOT NULL)""",
        ),
    ),
    Migration(
        4,
        "the replica that recorded each intent (one still running is not to be undone)",
        ("ALTER TABLE pending_steps ADD COLUMN owner TEXT NOT NULL DEFAULT ''",),
    ),
)

POSTGRES_MIGRATIONS = (
    Migration(
        1,
        "resources, CMK approvals, applications, LUIS keys, pending steps (as SQLite's version 4)",
        (
            """CREATE TABLE resources (
                uid TEXT PRIMARY KEY,
                resource_key TEXT NOT NULL UNIQUE,
                resource_id TEXT NOT NULL,
                subscription_id TEXT NOT NULL,
                resource_group TEXT NOT NULL,
                account_name TEXT NOT NULL,
                location TEXT NOT NULL,
                tier TEXT NOT NULL,
                create_time TEXT NOT NULL,
                tenant_id TEXT NOT NULL,
                key_source TEXT NOT NULL,
                wrapping_key TEXT NOT NULL,
                wrapped_data_key BYTEA NOT NULL,
                identity_principal_id TEXT NOT NULL DEFAULT '',
                identity_tenant_id TEXT NOT NULL DEFAULT '',
                key_uri TEXT NOT NULL DEFAULT '',
                follow_latest INTEGER NOT NULL DEFAULT 0,
                generation BIGINT NOT NULL DEFAULT 0)""",
            "CREATE INDEX resources_by_subscription ON resources(subscription_id, resource_key)",
            """CREATE TABLE cmk_approvals (
                subscription_id TEXT PRIMARY KEY,
                state TEXT NOT NULL,
                request_time TEXT NOT NULL,
                requested_by TEXT NOT NULL,
                decision_time TEXT,
                note TEXT NOT NULL DEFAULT '')""",
            """CREATE TABLE applications (
                seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                resource_uid TEXT NOT NULL REFERENCES resources(uid) ON DELETE CASCADE,
                application_id TEXT NOT NULL,
                display_name TEXT NOT NULL,
                version BIGINT NOT NULL,
                sealed_configuration BYTEA NOT NULL,
                create_time TEXT NOT NULL,
                update_time TEXT NOT NULL,
                UNIQUE (resource_uid, application_id))""",
            """CREATE TABLE luis_keys (
                resource_uid TEXT PRIMARY KEY REFERENCES resources(uid) ON DELETE CASCADE,
                version BIGINT NOT NULL,
                sealed BYTEA NOT NULL,
                update_time TEXT NOT NULL)""",
            """CREATE TABLE pending_steps (
                step_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                kind TEXT NOT NULL,
                resource_uid TEXT NOT NULL,
                resource_id TEXT NOT NULL,
                tenant_id TEXT NOT NULL,
                new_identity INTEGER NOT NULL,
                vault_name TEXT NOT NULL,
                start_time TEXT NOT NULL,
                owner TEXT NOT NULL DEFAULT '')""",
        ),
    ),
)
