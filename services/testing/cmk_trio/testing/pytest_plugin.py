"""A pytest plugin that gives a test suite a running trio, the way other projects drop a
containerised emulator into their tests, without Docker.

Installed with cmk-trio (entry point `pytest11`), it costs nothing until a test asks for
the `cmk_trio` fixture: then the three services start once per session, in a temporary
directory, on free loopback ports, in a background thread with its own event loop (so the
fixture works with or without pytest-asyncio), and stop when the session ends.

    def test_unwrap(cmk_trio):
        operator = cmk_trio.operator_credentials  # ClientCredentials of the platform operator
        ...  # use cmk_trio.client against cmk_trio.endpoints["identity"], ["keyvault"], ["speech"]

`cmk_trio_container` is the same trio in a container of our image, started with
testcontainers-python (pip install testcontainers) against Docker, or podman's Docker-compatible
socket (DOCKER_HOST=unix://...; with TESTCONTAINERS_RYUK_DISABLED=true where testcontainers'
reaper image cannot be pulled). The services talk mutual TLS; the handle carries the client
certificate, and `dial(service)` opens a channel with it:

    async def test_in_a_container(cmk_trio_container):
        channel = cmk_trio_container.dial("identity")
        client = IdentityClient(channel, cmk_trio_container.operator_credentials)

CMK_TRIO_IMAGE names the image (default cmk-trio:latest, as compose.yaml builds it).
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

# Nothing of grpc or the client is imported until a fixture is used: pytest loads this plugin
# in every run of every project that installs cmk-trio.
if TYPE_CHECKING:
    import grpc

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
    from cmk_trio.client.identity import ClientCredentials
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


PORTS = {"identity": 50051, "keyvault": 50052, "speech": 50053}
CONTAINER_START_GUARD_S = 120.0


@dataclass(frozen=True)
class ContainerTrioHandle:
    """The trio in a container: endpoints on the host, the operator's credentials, and the
    client certificate (with its CA) that mutual TLS asks for."""

    endpoints: dict[str, str]
    operator_credentials: ClientCredentials
    tls_dir: Path
    container_id: str

    def dial(self, service: str) -> grpc.aio.Channel:
        """A channel to `service` ("identity", "keyvault" or "speech") over mutual TLS."""
        from cmk_trio.client.channel import ChannelTls, open_channel

        tls = ChannelTls(self.tls_dir / "ca.crt", self.tls_dir / "cli.crt", self.tls_dir / "cli.key")
        return open_channel(self.endpoints[service], tls)


@pytest.fixture(scope="session")
def cmk_trio_container() -> Iterator[ContainerTrioHandle]:
    """The identity, key vault and speech services in one container of our image (`cmk up`),
    for the whole session, started with testcontainers; removed at the end."""
    from testcontainers.core.container import DockerContainer

    from cmk_trio.client.identity import ClientCredentials

    command = ["cmk", "--output", "json", "up", "--data-dir", "/data", "--port-base", "50050", "--dev-time-control",
               "--hide-operator-secret"]  # fmt: skip
    everywhere = "0.0.0.0"  # noqa: S104 (inside the container; published on the host's loopback below)
    container = (
        DockerContainer(os.environ.get("CMK_TRIO_IMAGE", "cmk-trio:latest"))
        .with_command(command)
        .with_envs(CMK_IDENTITY_HOST=everywhere, CMK_KEYVAULT_HOST=everywhere, CMK_SPEECH_HOST=everywhere)
    )
    # Published on the host's loopback only, each on a free port (mutual TLS all the same):
    # docker-py's (address, port) form, which with_bind_ports does not offer.
    ports: dict[Any, Any] = {port: ("127.0.0.1", None) for port in PORTS.values()}
    container.ports = ports
    container.start()
    try:
        _wait_for_announcement(container)
        with tempfile.TemporaryDirectory(prefix="cmk-trio-container-") as tmp:
            tls_dir = Path(tmp)
            for name in ("ca.crt", "cli.crt", "cli.key"):
                _copy_out(container, f"/data/tls/{name}", tls_dir / name)
            _copy_out(container, "/data/operator.json", tls_dir / "operator.json")
            operator = json.loads((tls_dir / "operator.json").read_text())
            (tls_dir / "operator.json").unlink()
            yield ContainerTrioHandle(
                endpoints={name: f"127.0.0.1:{container.get_exposed_port(port)}" for name, port in PORTS.items()},
                operator_credentials=ClientCredentials(
                    operator["tenant_id"], operator["client_id"], operator["client_secret"]
                ),
                tls_dir=tls_dir,
                container_id=container.get_container_id(),
            )
    finally:
        container.stop()


def _wait_for_announcement(container: Any) -> None:
    """Until `cmk up` prints its one line of JSON: every service is serving."""
    deadline = time.monotonic() + CONTAINER_START_GUARD_S
    while True:
        out, err = container.get_logs()
        if any(line.startswith(b"{") and b'"endpoint"' in line for line in out.splitlines()):
            return
        container.reload()  # its status, as the engine sees it now
        if container.status in {"exited", "dead"} or time.monotonic() > deadline:
            raise RuntimeError(f"the trio's container did not start:\n{err.decode(errors='replace')[-3000:]}")
        time.sleep(0.2)


def _copy_out(container: Any, source: str, destination: Path) -> None:
    """A file of the container's, copied to the host (private files stay 0600)."""
    container.copy_from_container(source, destination)
    if destination.suffix in {".key", ".json"}:
        destination.chmod(0o600)
