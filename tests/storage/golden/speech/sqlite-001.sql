-- speech on sqlite, version 1: resources, CMK approvals, applications, LUIS keys
-- A shipped migration, frozen by tests/storage/test_shipped_migrations.py: never edit it.

CREATE TABLE resources (
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
                follow_latest INTEGER NOT NULL DEFAULT 0);

CREATE INDEX resources_by_subscription ON resources(subscription_id, resource_key);

CREATE TABLE cmk_approvals (
                subscription_id TEXT PRIMARY KEY,
                state TEXT NOT NULL,
                request_time TEXT NOT NULL,
                requested_by TEXT NOT NULL,
                decision_time TEXT,
                note TEXT NOT NULL DEFAULT '');

CREATE TABLE applications (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                resource_uid TEXT NOT NULL REFERENCES resources(uid) ON DELETE CASCADE,
                application_id TEXT NOT NULL,
                display_name TEXT NOT NULL,
                version INTEGER NOT NULL,
                sealed_configuration BLOB NOT NULL,
                create_time TEXT NOT NULL,
                update_time TEXT NOT NULL,
                UNIQUE (resource_uid, application_id));

CREATE TABLE luis_keys (
                resource_uid TEXT PRIMARY KEY REFERENCES resources(uid) ON DELETE CASCADE,
                version INTEGER NOT NULL,
                sealed BLOB NOT NULL,
                update_time TEXT NOT NULL);
