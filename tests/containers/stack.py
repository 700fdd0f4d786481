"""compose.yaml brought up for a test: its own project name, free host ports, and what a test
needs to reach into it (containers by service, volumes on the host, channels over mutual TLS).

podman runs health checks from systemd timers, which these machines do not have; a Stack
runs `podman healthcheck run` for its starting containers itself, for as long as it is up, so
that `depends_on: condition: service_healthy` and the health status work as under Docker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cmk_trio.client.channel import ChannelTls, open_channel
from cmk_trio.client.identity import ClientCredentials
from cmk_trio.rpckit.probe import probe_proxy
from tests.containers import engine
from tests.keyvault.doors import Doors, furnish

SERVICES = ("identity", "keyvault", "speech")
PUBLISHED = (*SERVICES, *(f"{name}_metrics" for name in SERVICES), "identity_http", "keyvault_http", "arm", "proxy")
REPLICAS_PUBLISHED = (
    *(f"{name}_{r}" for name in SERVICES for r in (1, 2)),
    *(f"{door}_http_{r}" for door in ("identity", "keyvault") for r in (1, 2)),
    *(f"arm_{r}" for r in (1, 2)),
    "postgres",
    "proxy",
)
GRPC_PORTS = {"identity": 50051, "keyvault": 50052, "speech": 50053}
READY_GUARD_S = 120.0  # a hang guard for a container coming up, not a speed claim


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class HealthChecks(threading.Thread):
    """Runs the health checks of a project's containers that are starting or unhealthy, every
    half second, in place of podman's systemd timers."""

    def __init__(self, project: str) -> None:
        super().__init__(name=f"health-{project}", daemon=True)
        self.project = project
        self.halt = threading.Event()
        self.idle = threading.Lock()
        """Held while compose takes the project down: no health check is run into a container
        that is being removed."""

    def run(self) -> None:
        label = f"label=com.docker.compose.project={self.project}"
        while not self.halt.wait(0.5):
            with self.idle:
                self._check(label)

    def _check(self, label: str) -> None:
        # One listing a tick (30 ms of CPU each): the names of the project's running
        # containers whose health is starting or unhealthy.
        listing = engine.podman("ps", "--filter", label, "--format", "{{.Names}}\t{{.Status}}", check=False,
                                timeout=30)  # fmt: skip
        for line in listing.splitlines():
            name, _, status = line.partition("\t")
            if "(starting)" in status or "(unhealthy)" in status:
                engine.podman("healthcheck", "run", name, check=False, timeout=30)


@dataclass
class Stack:
    """One compose project from compose.yaml (and any further files)."""

    flavour: str
    files: Sequence[Path]
    settings: dict[str, str] = field(default_factory=dict)
    published: Sequence[str] = PUBLISHED
    """What the host reaches, as the file's CMK_PUBLISH_* variables name it (lower case):
    `identity`, or `identity_1` and `identity_2` for replicas; `*_metrics`; `postgres`."""
    project: str = field(default_factory=engine.project_name)
    ports: dict[str, int] = field(default_factory=dict)
    checks: HealthChecks | None = None

    def __post_init__(self) -> None:
        self.ports = {name: free_port() for name in self.published}

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in engine.engine_env().items() if not k.startswith(("CMK_", "COMPOSE_"))}
        for name, port in self.ports.items():
            env[f"CMK_PUBLISH_{name.upper()}"] = str(port)
        env.update(self.settings)
        return env

    def compose(self, *args: str, timeout: float = 600) -> str:
        files = [arg for path in self.files for arg in ("-f", str(path))]
        command = [*engine.compose_command(self.flavour), *files, "-p", self.project, *args]
        return engine.run_quietly(command, self.env, timeout)

    def up(self) -> float:
        """`compose up -d` (which waits for the healthy dependencies); seconds it took."""
        if self.checks is None:
            self.checks = HealthChecks(self.project)
            self.checks.start()
        started = time.monotonic()
        self.compose("up", "-d", timeout=900)
        return time.monotonic() - started

    def down(self, *, volumes: bool) -> None:
        with self.checks.idle if self.checks is not None else contextlib.nullcontext():
            self.compose("down", *(["--volumes"] if volumes else []), "--timeout", "10")

    def close(self) -> None:
        """Everything of the project gone: containers, network, volumes."""
        try:
            self.down(volumes=True)
        finally:
            if self.checks is not None:
                self.checks.halt.set()
                self.checks.join(10)
                self.checks = None

    # Containers, volumes and the network, by their compose names.

    def container(self, service: str, index: int = 1) -> str:
        """The container of a service (by compose's labels, so that both compose versions'
        naming schemes are found)."""
        names = engine.podman(
            "ps", "-a", "--filter", f"label=com.docker.compose.project={self.project}",
            "--filter", f"label=com.docker.compose.service={service}",
            "--filter", f"label=com.docker.compose.container-number={index}", "--format", "{{.Names}}",
        ).split()  # fmt: skip
        assert len(names) == 1, f"{service}: containers {names}"
        return names[0]

    def inspect(self, service: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = json.loads(engine.podman("inspect", self.container(service)))
        return found[0]

    def pid(self, service: str) -> int:
        return int(self.inspect(service)["State"]["Pid"])

    def restarts(self, service: str) -> int:
        return int(self.inspect(service).get("RestartCount", 0))

    def volume(self, name: str) -> Path:
        return Path(engine.podman("volume", "inspect", f"{self.project}_{name}", "--format", "{{.Mountpoint}}").strip())

    @property
    def tls_dir(self) -> Path:
        """The CLI's certificate, key and the CA's certificate."""
        return self.volume("tls-cli")

    def operator(self) -> ClientCredentials:
        content = json.loads((self.volume("operator") / "operator.json").read_text())
        return ClientCredentials(content["tenant_id"], content["client_id"], content["client_secret"])

    def endpoints(self) -> dict[str, str]:
        """Each service's endpoint from the host: its port, or the list of its replicas'."""
        found = {}
        for name in SERVICES:
            replicas = sorted(k for k in self.ports if k == name or re.fullmatch(rf"{name}_\d+", k))
            found[name] = ",".join(f"127.0.0.1:{self.ports[k]}" for k in replicas)
        return found

    def dial(self, endpoint: str) -> grpc.aio.Channel:
        tls = self.tls_dir
        return open_channel(endpoint, ChannelTls(tls / "ca.crt", tls / "cli.crt", tls / "cli.key"))

    def cli_args(self) -> list[str]:
        """The group options that point `cmk` on the host at this stack."""
        endpoints = self.endpoints()
        return ["--tls-dir", str(self.tls_dir), "--endpoint", endpoints["identity"],
                "--keyvault-endpoint", endpoints["keyvault"], "--speech-endpoint", endpoints["speech"]]  # fmt: skip

    async def serving(self, service: str) -> bool:
        """Whether the service (every replica of it, one by one) answers SERVING."""
        for endpoint in self.endpoints()[service].split(","):
            if await self.health(endpoint) != "SERVING":
                return False
        return True

    async def health(self, endpoint: str) -> str:
        """What a server answers the standard health question: SERVING, NOT_SERVING (it is
        up and says it cannot serve), or UNREACHABLE."""
        channel = self.dial(endpoint)
        try:
            stub: Any = health_pb2_grpc.HealthStub(channel)
            reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
            return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
        except grpc.aio.AioRpcError:
            return "UNREACHABLE"
        finally:
            await channel.close()

    async def wait_serving(self, service: str, guard: float = READY_GUARD_S) -> float:
        """Seconds until the service answers SERVING from the host."""
        started = time.monotonic()
        while not await self.serving(service):
            if time.monotonic() - started > guard:
                raise AssertionError(f"{service} not serving after {guard:g} s:\n{self.logs(service)[-3000:]}")
            await asyncio.sleep(0.1)
        return time.monotonic() - started

    def _published(self, name: str, replica: int) -> int:
        """The host port of `name` (identity_http, ...): its own, or replica `replica`'s."""
        return self.ports.get(name) or self.ports[f"{name}_{replica}"]

    async def wait_proxy_serving(self, guard: float = READY_GUARD_S) -> float:
        """Seconds until the published CONNECT proxy says SERVING (both doors answer it)."""
        started = time.monotonic()
        while (said := await asyncio.to_thread(probe_proxy, self.ports["proxy"])) != "SERVING":
            if time.monotonic() - started > guard:
                logs = self.logs("proxy")[-3000:]
                raise AssertionError(f"the proxy is not serving after {guard:g} s ({said}):\n{logs}")
            await asyncio.sleep(0.2)
        return time.monotonic() - started

    @contextlib.asynccontextmanager
    async def open_doors(self, replica: int = 1) -> AsyncIterator[Doors]:
        """Microsoft's SDKs' view of the stack from the host (tests/keyvault/doors.py): the
        published doors (of replica `replica`, in the replicas profile) for the explicit way,
        the published proxy for Azure's defaults, the stack's CA; a tenant and a vault made
        over gRPC."""
        tls = self.tls_dir
        async with furnish(
            ChannelTls(tls / "ca.crt", tls / "cli.crt", tls / "cli.key"), self.endpoints(), self.operator(),
            authority=f"https://localhost:{self._published('identity_http', replica)}",
            door=f"127.0.0.1:{self._published('keyvault_http', replica)}",
            proxy=f"http://127.0.0.1:{self.ports['proxy']}",
        ) as doors:  # fmt: skip
            doors.arm = f"https://localhost:{self._published('arm', replica)}"
            yield doors

    def walk_the_seed(self, scratch: Path) -> str:
        """`cmk demo` from the host against the stack; its output. The operator credential is
        read where the containers keep it (the operator volume); speech's stored ciphertext,
        from speech itself (its development service hands over records as stored)."""
        data = scratch / "demo"
        data.mkdir()
        (data / "operator.json").write_bytes((self.volume("operator") / "operator.json").read_bytes())
        (data / "operator.json").chmod(0o600)  # the CLI reads only a private credential file (rpckit.keyfiles)
        done = subprocess.run(
            [str(Path(sys.executable).parent / "cmk"), *self.cli_args(), "demo", "--data-dir", str(data)],
            capture_output=True, text=True, env=host_env(), timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert "the seed behaved as written" in done.stdout
        assert "starting a private one" not in done.stdout  # it walked the containers, not a trio of its own
        assert "byte-for-byte the same" in done.stdout, done.stdout  # the stored ciphertext was looked at
        return done.stdout

    def database_password(self, service: str = "speech") -> str:
        """A service's PostgreSQL password (replicas profile), from its own pgpass file."""
        line = (self.volume(f"pg-{service}") / "pgpass").read_text().strip()
        return line.rsplit(":", 1)[1]

    def logs(self, service: str) -> str:
        done = subprocess.run(["podman", "logs", self.container(service)], env=engine.engine_env(),
                              capture_output=True, text=True, check=False)  # fmt: skip
        return done.stdout + done.stderr

    def run(self, *args: str, volumes: Sequence[str] = (), networks: Sequence[str] = (), timeout: float = 300) -> str:
        """A one-off container of our image on the stack's networks; its standard output."""
        mounts = [arg for volume in volumes for arg in ("-v", volume)]
        joined = [arg for network in networks for arg in ("--network", network)]
        return engine.podman("run", "--rm", *joined, *mounts, engine.IMAGE, *args, timeout=timeout)

    def network_of(self, name: str) -> str:
        """A network of compose.yaml as podman names it."""
        return f"{self.project}_{name}"

    @property
    def networks_for_clients(self) -> list[str]:
        """The networks on which a container of ours reaches all three services."""
        return [self.network_of("directory-vault"), self.network_of("vault-speech")]


def host_env() -> dict[str, str]:
    """The environment for `cmk` on the host: no CMK_* setting of the developer's leaks in."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CMK_")}
