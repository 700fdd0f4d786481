"""cmk-trio: the identity, key vault and speech services, their shared plumbing, client and CLI."""
