"""The security suite runs against the three real services with a customer ready for
customer-managed keys (the CMK tests' world)."""

from __future__ import annotations

from tests.speech.cmk_world import kv_channel_for, speech_cmk, world  # noqa: F401 (fixtures)
