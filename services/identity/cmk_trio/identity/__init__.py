"""The identity service: the directory (tenants, subscriptions, principals, credentials,
role assignments, managed identities), token issuance, signing keys, and its event stream."""
