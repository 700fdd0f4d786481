-- identity on postgres, version 1: directory, credentials, roles, signing keys, events (as SQLite's version 1)
-- A shipped migration, frozen by tests/storage/test_shipped_migrations.py: never edit it.

CREATE TABLE tenants (
                tenant_id TEXT PRIMARY KEY,
                display_name TEXT NOT NULL,
                platform INTEGER NOT NULL DEFAULT 0,
                create_time TEXT NOT NULL);

CREATE TABLE subscriptions (
                subscription_id TEXT PRIMARY KEY,
                tenant_id TEXT NOT NULL REFERENCES tenants(tenant_id),
                display_name TEXT NOT NULL,
                create_time TEXT NOT NULL,
                transfer_time TEXT);

CREATE INDEX subscriptions_by_tenant ON subscriptions(tenant_id, subscription_id);

CREATE TABLE principals (
                object_id TEXT PRIMARY KEY,
                tenant_id TEXT NOT NULL REFERENCES tenants(tenant_id),
                kind INTEGER NOT NULL,
                display_name TEXT NOT NULL,
                client_id TEXT NOT NULL UNIQUE,
                enabled INTEGER NOT NULL,
                resource_id TEXT NOT NULL DEFAULT '',
                resource_key TEXT UNIQUE,
                owner_object_id TEXT NOT NULL DEFAULT '',
                platform_service TEXT NOT NULL DEFAULT '',
                tenant_admin INTEGER NOT NULL DEFAULT 0,
                operator INTEGER NOT NULL DEFAULT 0,
                create_time TEXT NOT NULL,
                update_time TEXT NOT NULL);

CREATE INDEX principals_by_tenant ON principals(tenant_id, object_id);

CREATE TABLE client_secrets (
                secret_id TEXT PRIMARY KEY,
                object_id TEXT NOT NULL REFERENCES principals(object_id) ON DELETE CASCADE,
                display_name TEXT NOT NULL,
                hash TEXT NOT NULL,
                create_time TEXT NOT NULL,
                expire_time TEXT NOT NULL);

CREATE INDEX client_secrets_by_principal ON client_secrets(object_id, secret_id);

CREATE TABLE role_assignments (
                role_assignment_id TEXT PRIMARY KEY,
                principal_id TEXT NOT NULL REFERENCES principals(object_id) ON DELETE CASCADE,
                role INTEGER NOT NULL,
                scope TEXT NOT NULL,
                scope_key TEXT NOT NULL,
                subscription_id TEXT NOT NULL REFERENCES subscriptions(subscription_id),
                tenant_id TEXT NOT NULL,
                create_time TEXT NOT NULL,
                created_by TEXT NOT NULL,
                UNIQUE (principal_id, role, scope_key));

CREATE INDEX role_assignments_by_principal ON role_assignments(principal_id);

CREATE INDEX role_assignments_by_subscription ON role_assignments(subscription_id);

CREATE TABLE signing_keys (
                kid TEXT PRIMARY KEY,
                public_jwk TEXT NOT NULL,
                sealed_private_key BYTEA NOT NULL,
                active INTEGER NOT NULL,
                create_time TEXT NOT NULL,
                retire_time TEXT);

CREATE TABLE events (
                sequence BIGINT PRIMARY KEY,
                type INTEGER NOT NULL,
                time TEXT NOT NULL,
                tenant_id TEXT NOT NULL DEFAULT '',
                principal_id TEXT NOT NULL DEFAULT '',
                subscription_id TEXT NOT NULL DEFAULT '',
                new_tenant_id TEXT NOT NULL DEFAULT '',
                kid TEXT NOT NULL DEFAULT '',
                scope TEXT NOT NULL DEFAULT '');
