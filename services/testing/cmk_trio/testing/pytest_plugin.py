"""A pytest plugin that gives a test suite a running trio, the way other projects drop a
containerised emulator into their tests, without Docker.

Installed with cmk-trio (entry point `pytest11`), it costs nothing until a test asks for
the `cmk_trio` fixture: then the three services start once per session, in a temporary
directory, on free loopback ports, in a background thread with its own event loop (so the
fixture works with or without pytest-asyncio), and stop when the session ends.

    def test_unwrap(cmk_trio):
        operator = cmk_trio.operator_credentials  # ClientCredentials of the platform operator
        ...  # use cmk_trio.client against cmk_trio.endpoints["identity"], ["keyvault"], ["speech"]

`cmk_azure` gives a test what Microsoft's SDKs (azure-identity, azure-keyvault-keys,
azure-keyvault-secrets) need to use the trio as `cmk_tenant`'s administrator, either way of
naming the hosts (the doors speak HTTPS only: run with --cmk-mtls, or `cmk_mtls = true`):

    def test_with_the_sdk(cmk_tenant, cmk_azure):
        ...  # a vault made with cmk_tenant.sync_client(), its access policy set
        keys = KeyClient(cmk_azure.vault_url("my-vault"), cmk_azure.credential(), transport=cmk_azure.transport())
        # or Azure's defaults untouched, given the environment: os.environ.update(cmk_azure.environment)

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

import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

# Imports inside functions: nothing of grpc, the client or the services is imported until a
# fixture is used, because pytest loads this plugin in every run of every project that installs
# cmk-trio.
if TYPE_CHECKING:
    import grpc
    from azure.core.pipeline.transport import AioHttpTransport, RequestsTransport
    from azure.identity import ClientSecretCredential

    from cmk_trio.client.blocking import LoopThread
    from cmk_trio.client.channel import ChannelTls
    from cmk_trio.client.front import CmkClient, SyncCmkClient
    from cmk_trio.client.identity import ClientCredentials
    from cmk_trio.launcher.replicas import RunningReplicas
    from cmk_trio.launcher.trio import RunningTrio


HANG_GUARD_S = 60.0
"""How long the fixtures wait for the trio's work before calling it hung (not a speed claim)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    """The trio's options: on the command line, or as ini settings (pytest.ini, pyproject)."""
    group = parser.getgroup("cmk-trio", "the cmk_trio fixture's trio")
    options = (
        ("auto_approve", "store_true", "approve CMK requests at once (skip the operator's approval)"),
        ("mtls", "store_true", "the services and the tests' clients talk mutual TLS (a development CA)"),
        ("replicas", "store", "processes per service (needs --cmk-database-url, a PostgreSQL database)"),
        ("database_url", "store", "postgresql://... for the replicas' tables"),
    )
    for name, action, help_text in options:
        flag = "--cmk-" + name.replace("_", "-")
        group.addoption(flag, action=action, dest=f"cmk_{name}", default=None, help=help_text)
        if action == "store_true":
            parser.addini(f"cmk_{name}", help_text, type="bool")
        else:
            parser.addini(f"cmk_{name}", help_text)  # (a string)


def _option(config: pytest.Config, name: str) -> Any:  # typed by the option's declaration above
    value = config.getoption(f"cmk_{name}")
    return value if value not in (None, False) else config.getini(f"cmk_{name}")


@dataclass(frozen=True)
class TrioHandle:
    """Where the trio listens, how to sign in as its operator and how to reach it."""

    endpoints: dict[str, str]
    data_dir: Path
    operator_credentials: ClientCredentials
    background: LoopThread = field(repr=False, compare=False)
    """The thread whose event loop runs the trio (and the handles' blocking calls)."""
    tls: ChannelTls | None = None
    """The client certificate and CA, when the trio talks mutual TLS (--cmk-mtls)."""
    oidc_url: str | None = None
    """The base URL of identity's OpenID Connect discovery, keys and token endpoint."""
    vault_door: str | None = None
    """The key vault's door for Azure's data plane, host:port (over HTTPS with --cmk-mtls)."""
    proxy_url: str | None = None
    """The CONNECT proxy for Azure's default names (with --cmk-mtls): what HTTPS_PROXY is set to."""

    def azure(self, credentials: ClientCredentials | None = None) -> AzureSdk:
        """What Microsoft's SDKs need to reach this trio as `credentials` (default: the
        operator). The doors speak HTTPS only, so the trio must run with --cmk-mtls."""
        if self.tls is None or not (self.oidc_url or "").startswith("https://") or not self.vault_door:
            raise RuntimeError(
                "Microsoft's SDKs need the trio's doors over HTTPS (their bearer tokens go over TLS only):"
                " run pytest with --cmk-mtls, or set cmk_mtls = true in the ini file (one process per service:"
                " --cmk-replicas serves no key vault door)"
            )
        return AzureSdk(credentials or self.operator_credentials, str(self.oidc_url), self.vault_door,
                        self.tls.ca_file, self.proxy_url)  # fmt: skip

    def dial(self, service: str) -> grpc.aio.Channel:
        """A channel to `service` ("identity", "keyvault" or "speech"), with TLS if the trio has it."""
        from cmk_trio.client.channel import open_channel

        return open_channel(self.endpoints[service], self.tls, peer=service)

    def connect(self, credentials: ClientCredentials | None = None, **options: Any) -> CmkClient:  # CmkClient.connect's
        """A CmkClient to the three services as `credentials` (default: the operator), for
        the test's own event loop: `async with cmk_trio.connect() as cmk: ...`."""
        from cmk_trio.client.front import CmkClient

        return CmkClient.connect(
            self.endpoints["identity"], keyvault=self.endpoints["keyvault"], speech=self.endpoints["speech"],
            credentials=credentials or self.operator_credentials, tls=self.tls, **options,
        )  # fmt: skip

    def sync_client(self, credentials: ClientCredentials | None = None, **options: Any) -> SyncCmkClient:  # (as above)
        """The same, blocking, for tests without asyncio: `with cmk_trio.sync_client() as cmk: ...`."""
        from cmk_trio.client.front import SyncCmkClient

        return SyncCmkClient.connect(
            self.endpoints["identity"], keyvault=self.endpoints["keyvault"], speech=self.endpoints["speech"],
            credentials=credentials or self.operator_credentials, tls=self.tls, **options,
        )  # fmt: skip


@pytest.fixture(scope="session")
def cmk_trio(pytestconfig: pytest.Config) -> Iterator[TrioHandle]:
    """The identity, key vault and speech services, running for the whole session (with the
    development clock: see `cmk_clock`). --cmk-auto-approve, --cmk-mtls and --cmk-replicas N
    with --cmk-database-url change how."""
    from cmk_trio.client.front import LoopThread
    from cmk_trio.client.identity import ClientCredentials

    auto_approve = bool(_option(pytestconfig, "auto_approve"))
    mutual_tls = bool(_option(pytestconfig, "mtls"))
    replicas = int(_option(pytestconfig, "replicas") or 1)
    database_url = str(_option(pytestconfig, "database_url") or "")
    if replicas > 1 and not database_url:
        raise pytest.UsageError("--cmk-replicas needs --cmk-database-url postgresql://... (the replicas share it)")
    background = LoopThread("cmk-trio")
    with tempfile.TemporaryDirectory(prefix="cmk-trio-") as tmp:
        data_dir = Path(tmp)
        if replicas > 1:
            from cmk_trio.launcher.replicas import start_replicas

            several = background.run(
                start_replicas(data_dir, 0, replicas=replicas, database_url=database_url, dev_time_control=True,
                               auto_approve=auto_approve, mutual_tls=mutual_tls),
                timeout=180,
            )  # fmt: skip
            oidc_url = several.replicas["identity"][0].announcement.get("oidc")
            vault_door = proxy_url = None
            running: RunningTrio | RunningReplicas = several
        else:
            from cmk_trio.launcher.trio import start_trio

            running = background.run(
                start_trio(data_dir, dev_time_control=True, auto_approve=auto_approve, mutual_tls=mutual_tls,
                           env={"CMK_DATABASE_URL": database_url} if database_url else {}),
                timeout=HANG_GUARD_S,
            )  # fmt: skip
            oidc_url = running.identity.http_url
            vault_door = (running.keyvault.http_url or "").removeprefix("https://").removeprefix("http://") or None
            proxy_url = running.proxy.url if running.proxy is not None else None
        try:
            operator = json.loads((data_dir / "operator.json").read_text())
            yield TrioHandle(
                endpoints=running.endpoints,
                data_dir=data_dir,
                operator_credentials=ClientCredentials(
                    operator["tenant_id"], operator["client_id"], operator["client_secret"]
                ),
                tls=_client_tls(running.tls_dir),
                oidc_url=oidc_url,
                vault_door=vault_door,
                proxy_url=proxy_url,
                background=background,
            )
        finally:
            background.run(running.stop(), timeout=HANG_GUARD_S)
            background.close()


def _client_tls(tls_dir: Path | None) -> ChannelTls | None:
    if tls_dir is None:
        return None
    from cmk_trio.client.channel import ChannelTls
    from cmk_trio.rpckit.devca import DevPki

    pki = DevPki(tls_dir)
    cli = pki.identity("cli")
    return ChannelTls(pki.ca_file, cli.cert_file, cli.key_file)


@dataclass(frozen=True)
class AzureSdk:
    """What Microsoft's SDKs need to use the trio as one principal, named either way:

    - explicitly: `credential()` signs in at identity's door, and `transport()` (a new one for
      each client: cmk_trio.client.azure's) sends https://{vault}.vault.azure.net to the key
      vault's door, with TLS still checked against the vault's name;
    - Azure's defaults, untouched: `environment` is what `cmk up`'s banner says to export
      (HTTPS_PROXY, NO_PROXY and the CA for requests, aiohttp and Node) with the principal's
      AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET; code that names nothing of
      ours then runs as written for Azure.

    Needs the SDKs installed (pip install 'cmk-trio[azure]' azure-keyvault-keys)."""

    credentials: ClientCredentials
    authority: str
    """Identity's door, https://host:port."""
    vault_door: str
    """The key vault's door, host:port."""
    ca_file: Path
    """The trio's development CA, which the doors' certificates chain to."""
    proxy_url: str | None = None

    def vault_url(self, vault: str) -> str:
        """A vault's URL, as in Azure: https://{vault}.vault.azure.net."""
        return f"https://{vault}.vault.azure.net"

    def credential(self) -> ClientSecretCredential:
        """azure-identity's ClientSecretCredential, signing in at identity's door."""
        from azure.identity import ClientSecretCredential

        c = self.credentials
        return ClientSecretCredential(c.tenant_id, c.client_id, c.client_secret, authority=self.authority,
                                      disable_instance_discovery=True, connection_verify=str(self.ca_file))  # fmt: skip

    def transport(self) -> RequestsTransport:
        """A transport for one synchronous client (KeyClient, CryptographyClient, SecretClient)."""
        from cmk_trio.client.azure import door_transport

        return door_transport(self.vault_door, ca=self.ca_file)

    def aio_transport(self) -> AioHttpTransport:
        """The same for one asynchronous client (made inside the event loop that uses it)."""
        from cmk_trio.client.azure import door_aio_transport

        return door_aio_transport(self.vault_door, ca=self.ca_file)

    @property
    def environment(self) -> dict[str, str]:
        """The variables under which Azure's defaults reach the trio through its proxy. aiohttp
        reads SSL_CERT_FILE when first imported: give them to a process of its own (or set
        them before anything imports aiohttp)."""
        if self.proxy_url is None:
            raise RuntimeError("this trio serves no CONNECT proxy (its doors are not HTTPS: --cmk-mtls)")
        ca = str(self.ca_file)
        c = self.credentials
        return {"HTTPS_PROXY": self.proxy_url, "NO_PROXY": "127.0.0.1,localhost", "REQUESTS_CA_BUNDLE": ca,
                "SSL_CERT_FILE": ca, "NODE_EXTRA_CA_CERTS": ca, "AZURE_TENANT_ID": c.tenant_id,
                "AZURE_CLIENT_ID": c.client_id, "AZURE_CLIENT_SECRET": c.client_secret}  # fmt: skip


@pytest.fixture
def cmk_azure(cmk_tenant: TenantHandle) -> AzureSdk:
    """What Microsoft's SDKs need to use the trio as `cmk_tenant`'s administrator (see
    AzureSdk); the trio must run with --cmk-mtls (its doors speak HTTPS only)."""
    return cmk_tenant.trio.azure(cmk_tenant.credentials)


@dataclass(frozen=True)
class TenantHandle:
    """A tenant of the test's own: its subscription, and an administrator who owns it."""

    tenant_id: str
    subscription_id: str
    admin_object_id: str
    credentials: ClientCredentials
    """The administrator's sign-in."""
    trio: TrioHandle

    def connect(self, **options: Any) -> CmkClient:  # CmkClient.connect's
        """A CmkClient as the administrator: `async with cmk_tenant.connect() as cmk: ...`."""
        return self.trio.connect(self.credentials, **options)

    def sync_client(self, **options: Any) -> SyncCmkClient:  # CmkClient.connect's
        """The same, blocking: `with cmk_tenant.sync_client() as cmk: ...`."""
        return self.trio.sync_client(self.credentials, **options)


@pytest.fixture
def cmk_tenant(cmk_trio: TrioHandle, request: pytest.FixtureRequest) -> TenantHandle:
    """A fresh tenant for each test: a subscription, and a user who administers the tenant
    and owns the subscription, signed in with a client secret. Tests sharing the session's
    trio do not see each other's tenants' vaults, keys or resources; vault names are global,
    as in the real cloud, so name a test's vaults after something of its own (its tenant id)."""
    from cmk_trio.client.identity import ClientCredentials
    from cmk_trio.proto.identity.v1 import resources_pb2 as idres

    name = request.node.name[:60]

    async def make() -> tuple[str, str, str, ClientCredentials]:
        async with cmk_trio.connect() as operator:
            directory = operator.identity
            tenant = await directory.create_tenant(f"test {name}")
            sub = await directory.create_subscription(tenant.tenant_id, f"{name} subscription")
            admin = await directory.create_principal(tenant.tenant_id, idres.USER, "admin", tenant_admin=True)
            secret = await directory.add_client_secret(tenant.tenant_id, admin.object_id, "test")
            await directory.create_role_assignment(
                admin.object_id, idres.OWNER, f"/subscriptions/{sub.subscription_id}"
            )
            credentials = ClientCredentials(tenant.tenant_id, secret.client_id, secret.secret_value)
            return tenant.tenant_id, sub.subscription_id, admin.object_id, credentials

    tenant_id, subscription_id, admin_id, credentials = cmk_trio.background.run(make(), timeout=HANG_GUARD_S)
    return TenantHandle(tenant_id, subscription_id, admin_id, credentials, cmk_trio)


@dataclass(frozen=True)
class ClockHandle:
    """The three services' development clocks, moved together (forward only)."""

    trio: TrioHandle

    def advance(self, seconds: float | timedelta = 0, *, days: int = 0) -> None:
        """Move every service's clock (every replica's) forward by the same amount, so that
        tokens, retention, purge dates and rotation policies agree."""
        whole = int((seconds.total_seconds() if isinstance(seconds, timedelta) else seconds) + days * 86400)
        if whole <= 0:
            raise ValueError("the clocks move forward only, by a whole number of seconds")
        self.trio.background.run(_advance_all(self.trio, whole), timeout=HANG_GUARD_S)


@pytest.fixture
def cmk_clock(cmk_trio: TrioHandle) -> ClockHandle:
    """Advances the clocks of all three services: `cmk_clock.advance(days=91)`. The trio is
    the session's, so later tests see the moved clock too."""
    return ClockHandle(cmk_trio)


async def _advance_all(trio: TrioHandle, seconds: int) -> None:
    from cmk_trio.client.calls import call
    from cmk_trio.client.channel import open_channel
    from cmk_trio.client.identity import IdentityClient
    from cmk_trio.proto.common.v1 import dev_service_pb2 as dev_pb
    from cmk_trio.proto.common.v1 import dev_service_pb2_grpc as dev_grpc
    from cmk_trio.rpckit import audiences

    directory = open_channel(trio.endpoints["identity"], trio.tls, peer="identity")
    try:
        operator = IdentityClient(directory, trio.operator_credentials)
        # Tokens first, then identity last: tokens it issued stay current on the others as they move.
        tokens = {a: await operator.token_for(a) for a in (audiences.DIRECTORY, audiences.MANAGEMENT)}
        for service in ("keyvault", "speech", "identity"):
            audience = audiences.DIRECTORY if service == "identity" else audiences.MANAGEMENT
            for replica in trio.endpoints[service].split(","):
                channel = open_channel(replica, trio.tls, peer=service)
                try:
                    request = dev_pb.AdvanceClockRequest(seconds=seconds)
                    await call(dev_grpc.DevServiceStub(channel).AdvanceClock, request, token=tokens[audience])
                finally:
                    await channel.close()
    finally:
        await directory.close()


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
        return open_channel(self.endpoints[service], tls, peer=service)


@pytest.fixture(scope="session")
def cmk_trio_container() -> Iterator[ContainerTrioHandle]:
    """The identity, key vault and speech services in one container of our image (`cmk up`),
    for the whole session, started with testcontainers; removed at the end."""
    from testcontainers.core.container import DockerContainer  # (optional: pip install testcontainers)

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


def _wait_for_announcement(container: Any) -> None:  # testcontainers' container: it ships no types
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


def _copy_out(container: Any, source: str, destination: Path) -> None:  # (testcontainers', as above)
    """A file of the container's, copied to the host (private files stay 0600)."""
    container.copy_from_container(source, destination)
    if destination.suffix in {".key", ".json"}:
        destination.chmod(0o600)
