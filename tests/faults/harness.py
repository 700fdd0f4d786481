"""The three services as separate processes, the way an operator runs them, with the faults
of a bad day: kill -9 at random moments and restart on the same port and data directory, and
outages of a dependency. A ledger keeps what was acknowledged, so that what a fault lost (or
left stuck) can be counted afterwards."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cmk_trio.client.channel import open_channel
from cmk_trio.client.identity import ClientCredentials, IdentityClient
from cmk_trio.proto.identity.v1 import resources_pb2 as idres
from tests.partition import Link

CMK = [sys.executable, "-m", "cmk_trio.cli"]
READY_GUARD_S = 60.0  # a hang guard for a service coming up, not a speed claim


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    """One service process, restartable on the same port and data directory."""

    name: str
    args: list[str]
    env: dict[str, str]
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [*CMK, "serve", self.name, *self.args, "--port", str(self.port)],
                stdout=subprocess.DEVNULL, stderr=log, env=self.env,
            )  # fmt: skip
        self.starts += 1

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def pause(self) -> None:
        """SIGSTOP: the process holds its sockets and answers nothing (a hung peer)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a paused process cannot take SIGTERM
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)

    async def wait_ready(self, guard: float = READY_GUARD_S) -> float:
        """Seconds until health says SERVING (the service is ready, its dependencies current)."""
        started = time.monotonic()
        channel = open_channel(self.endpoint)
        stub: Any = health_pb2_grpc.HealthStub(channel)  # the stub's methods are set at run time
        try:
            while True:
                assert self.process is not None and self.process.poll() is None, f"{self.name} exited: {self.log}"
                try:
                    reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return time.monotonic() - started
                except grpc.aio.AioRpcError:
                    pass
                if time.monotonic() - started > guard:
                    raise AssertionError(f"{self.name} not ready after {guard:g} s; see {self.log}")
                await asyncio.sleep(0.05)
        finally:
            await channel.close()


@dataclass
class Trio:
    """Identity, the key vault and speech as three processes in one directory of their own;
    speech reaches the vault through a Link that a test can cut."""

    root: Path
    identity: Service
    keyvault: Service
    speech: Service
    operator: ClientCredentials
    vault_link: Link

    @property
    def services(self) -> dict[str, Service]:
        return {"identity": self.identity, "keyvault": self.keyvault, "speech": self.speech}

    async def stop(self) -> None:
        for service in (self.speech, self.keyvault, self.identity):
            service.stop()
        await self.vault_link.close()


def environment(staleness_s: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CMK_")}
    env.update({
        "CMK_SECRET_HASH_COST": "10",
        "CMK_EVENT_HEARTBEAT_SECONDS": "1",
        "CMK_REVOCATION_MAX_STALENESS_SECONDS": str(staleness_s),
        "CMK_LOG_LEVEL": "WARNING",
    })  # fmt: skip
    return env


async def start_trio(root: Path, staleness_s: int = 3) -> Trio:
    """Identity first; then the platform principals of the other two, made by the operator as
    an installation does; then the key vault and speech, each on its own data directory."""
    env = environment(staleness_s)
    identity = Service("identity", ["--data-dir", str(root / "identity")], env, free_port(), root / "identity.log")
    identity.start()
    await identity.wait_ready()
    operator_file = json.loads((root / "identity" / "operator.json").read_text())
    operator = ClientCredentials(operator_file["tenant_id"], operator_file["client_id"], operator_file["client_secret"])
    channel = open_channel(identity.endpoint)
    try:
        client = IdentityClient(channel, operator)
        files = {}
        for name in ("keyvault", "speech"):
            principal = await client.create_principal(
                operator.tenant_id, idres.SERVICE_PRINCIPAL, f"{name} service", platform_service=name
            )
            secret = await client.add_client_secret(operator.tenant_id, principal.object_id, "platform")
            files[name] = root / f"{name}-credentials.json"
            files[name].write_text(json.dumps({
                "tenant_id": operator.tenant_id, "client_id": secret.client_id,
                "client_secret": secret.secret_value,
            }))  # fmt: skip
            files[name].chmod(0o600)
    finally:
        await channel.close()
    keyvault = Service(
        "keyvault",
        ["--data-dir", str(root / "keyvault"), "--identity-endpoint", identity.endpoint,
         "--credentials-file", str(files["keyvault"])],
        env, free_port(), root / "keyvault.log",
    )  # fmt: skip
    keyvault.start()
    await keyvault.wait_ready()
    vault_link = Link(keyvault.port)
    await vault_link.open()
    speech = Service(
        "speech",
        ["--data-dir", str(root / "speech"), "--identity-endpoint", identity.endpoint,
         "--keyvault-endpoint", vault_link.endpoint, "--credentials-file", str(files["speech"]), "--auto-approve-cmk"],
        env, free_port(), root / "speech.log",
    )  # fmt: skip
    speech.start()
    await speech.wait_ready()
    return Trio(root, identity, keyvault, speech, operator, vault_link)


@dataclass
class Ledger:
    """What was acknowledged: only an answered call counts, a failed or unanswered one never."""

    configs: dict[str, set[str]] = field(default_factory=dict)
    """Application name -> the configurations it may hold: the last acknowledged one, and those
    of later updates whose answer a fault lost (made or not, no one was told)."""
    in_doubt_creates: set[str] = field(default_factory=set)
    """Applications whose creation's answer was lost: they may exist or not."""
    rotations: list[str] = field(default_factory=list)
    """Key versions made by acknowledged rotations."""
    operations: int = 0
    failures: dict[str, int] = field(default_factory=dict)

    def failed(self, what: str, exc: BaseException) -> None:
        key = f"{what}: {getattr(exc, 'reason', type(exc).__name__)}"
        self.failures[key] = self.failures.get(key, 0) + 1


async def until(check: Callable[[], Awaitable[bool]], what: str, guard: float = READY_GUARD_S) -> float:
    """Seconds until `check()` is true (a hang guard, not a speed claim)."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > guard:
            raise AssertionError(f"{what}: not seen after {guard:g} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - started
