"""The key vault service: vaults, access policies, RSA keys and their versions, wrap and
unwrap, soft-delete and purge protection, and a tamper-evident audit log."""
