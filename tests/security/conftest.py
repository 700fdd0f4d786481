"""The security suite runs against the three real services with a customer ready for
customer-managed keys (the CMK tests' world)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.speech.cmk_world import kv_channel_for, speech_cmk, world  # noqa: F401 (fixtures)

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here carries the `security` marker (python3 dev.py security selects it)."""
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.security)
