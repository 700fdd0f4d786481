"""A pytest plugin that gives a test suite a running trio, the way other projects drop a
containerised emulator into their tests, without Docker.

Installed with cmk-trio (entry point `pytest11`), it costs nothing until a test asks for
the `cmk_trio` fixture: then the three services start once per session, in a temporary
directory, on free loopback ports, in a background thread with its own event loop (so the
fixture works with or without pytest-asyncio), and stop when the session ends.

    def test_unwrap(cmk_trio):
        operator = cmk_trio.operator_credentials  # ClientCredentials of the platform operator
        ...  # use cmk_trio.client against cmk_trio.endpoints["identity"], ["keyvault"], ["speech"]
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cmk_trio.client.identity import ClientCredentials


@dataclass(frozen=True)
class TrioHandle:
    """Where the trio listens and how to sign in as its operator."""

    endpoints: dict[str, str]
    data_dir: Path
    operator_credentials: ClientCredentials


class _Background:
    """An event loop in a thread, running the trio until told to stop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="cmk-trio", daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 60) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="session")
def cmk_trio() -> Iterator[TrioHandle]:
    """The identity, key vault and speech services, running for the whole session."""
    from cmk_trio.launcher.trio import start_trio

    background = _Background()
    with tempfile.TemporaryDirectory(prefix="cmk-trio-") as tmp:
        data_dir = Path(tmp)
        trio = background.run(start_trio(data_dir, dev_time_control=True, env={}))
        try:
            operator = json.loads((data_dir / "operator.json").read_text())
            yield TrioHandle(
                endpoints=trio.endpoints,
                data_dir=data_dir,
                operator_credentials=ClientCredentials(
                    operator["tenant_id"], operator["client_id"], operator["client_secret"]
                ),
            )
        finally:
            background.run(trio.stop())
            background.close()
