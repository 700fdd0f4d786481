"""The `cmk` command, built on cmk_trio.client."""
