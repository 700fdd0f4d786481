-- identity on postgres, version 4: resource groups (Azure Resource Manager's), beside their subscriptions
-- A shipped migration, frozen by tests/storage/test_shipped_migrations.py: never edit it.

CREATE TABLE resource_groups (
                subscription_id TEXT NOT NULL REFERENCES subscriptions(subscription_id),
                name_key TEXT NOT NULL,
                name TEXT NOT NULL,
                location TEXT NOT NULL,
                tags TEXT NOT NULL,
                create_time TEXT NOT NULL,
                update_time TEXT,
                PRIMARY KEY (subscription_id, name_key));
