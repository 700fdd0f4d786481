"""The `cmk` command, built on services.client."""
