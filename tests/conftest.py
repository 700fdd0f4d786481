"""Fixtures shared by every test: a fake clock, and a real identity service on an
ephemeral loopback port with its data in the test's own directory."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from cmk_trio.client.channel import open_channel
from cmk_trio.client.identity import ClientCredentials, IdentityClient
from cmk_trio.identity.config import IdentityConfig
from cmk_trio.identity.server import IdentityServer, build_server
from cmk_trio.keyvault.config import KeyVaultConfig
from cmk_trio.keyvault.server import KeyVaultServer
from cmk_trio.keyvault.server import build_server as build_keyvault
from cmk_trio.rpckit.clock import FakeClock
from tests import postgres

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

# Low scrypt cost keeps the suite fast; the production default is tested in test_crypto.
TEST_HASH_COST = 10


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """Each test leaves the root logger as it found it. A test that configured logging at DEBUG
    and only cleared the handlers left every later test logging gRPC's and aiosqlite's debug
    lines into pytest's capture, where a garbage collection inside the capture's lock could
    finalize a gRPC object waiting for a lock the main thread held: the suite hung on a busy
    machine."""
    root = logging.getLogger()
    level, handlers, filters = root.level, list(root.handlers), list(root.filters)
    yield
    root.setLevel(level)
    root.handlers[:] = handlers
    root.filters[:] = filters


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--freeze-new-migrations",
        action="store_true",
        help="write the golden SQL file of each migration that has none (tests/storage); never rewrites one",
    )


def pytest_sessionfinish() -> None:
    postgres.drop_run_database_if_made()


@pytest.fixture
def postgres_url() -> str:
    """A postgresql:// URL, in the run's own database, whose schemas no other test uses."""
    return postgres.fresh_schemas(postgres.run_database())


@pytest.fixture
def database_url() -> str:
    """What the services of a test keep their tables in: "" (SQLite files in their data
    directories) or, with CMK_TEST_ENGINE=postgres, schemas of the test's own."""
    return postgres.database_url_for_a_test()


@pytest.fixture(params=["sqlite", "postgres"])
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    """Where a store test opens its store: once in a SQLite file, once on PostgreSQL."""
    if request.param == "sqlite":
        return tmp_path / "store.db"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC).replace(microsecond=0))


def identity_config(data_dir: Path, **overrides: object) -> IdentityConfig:
    values: dict[str, object] = {"data_dir": data_dir, "port": 0, "secret_hash_cost": TEST_HASH_COST}
    values["database_url"] = overrides.pop("database_url", None) or postgres.database_url_for_a_test()
    values.update(overrides)
    return IdentityConfig(**values)  # type: ignore[arg-type]


@pytest.fixture
def dev_time_control() -> bool:
    """Whether the services of a test start with the development clock (a module that needs
    it overrides this fixture)."""
    return False


@pytest.fixture
def keyvault_http_port() -> int | None:
    """Whether the key vault of a test serves Azure's data plane (rest_door) too: None, not
    served (a module that calls the door overrides this with 0, a free port; plain HTTP on
    loopback, since the test services have no certificate)."""
    return None


@pytest.fixture
def tracer_provider() -> TracerProvider | None:
    """Where the services of a test send their spans: nowhere (a module that asserts traces
    overrides this with an in-memory exporter's provider)."""
    return None


@pytest.fixture
async def identity(
    tmp_path: Path, clock: FakeClock, dev_time_control: bool, database_url: str, tracer_provider: TracerProvider | None
) -> AsyncIterator[IdentityServer]:
    config = identity_config(tmp_path / "identity", dev_time_control=dev_time_control, database_url=database_url)
    server = await build_server(config, clock=clock, tracer_provider=tracer_provider)
    try:
        yield server
    finally:
        await server.stop(grace=0)


@pytest.fixture
async def channel(identity: IdentityServer) -> AsyncIterator[grpc.aio.Channel]:
    ch = open_channel(identity.endpoint)
    try:
        yield ch
    finally:
        await ch.close()


def operator_credentials(server: IdentityServer) -> ClientCredentials:
    data = json.loads(server.config.operator_file.read_text())
    return ClientCredentials(data["tenant_id"], data["client_id"], data["client_secret"])


@pytest.fixture
def operator(identity: IdentityServer, channel: grpc.aio.Channel, clock: FakeClock) -> IdentityClient:
    return IdentityClient(channel, operator_credentials(identity), clock=clock)


async def platform_credentials(
    operator: IdentityClient, channel: grpc.aio.Channel, clock: FakeClock, name: str
) -> ClientCredentials:
    """A platform service principal (keyvault, speech) made by the operator, with a secret."""
    from tests.identity.helpers import make_principal

    platform_tid = next(t.tenant_id for t in (await operator.list_tenants()).tenants if t.platform)
    _, creds, _ = await make_principal(operator, channel, clock, platform_tid, name, platform_service=name)
    return ClientCredentials(creds.tenant_id, creds.client_id, creds.client_secret)


@pytest.fixture
async def keyvault(
    tmp_path: Path,
    identity: IdentityServer,
    operator: IdentityClient,
    channel: grpc.aio.Channel,
    clock: FakeClock,
    dev_time_control: bool,
    database_url: str,
    tracer_provider: TracerProvider | None,
    keyvault_http_port: int | None,
) -> AsyncIterator[KeyVaultServer]:
    """A real key vault service wired to the identity fixture."""
    config = KeyVaultConfig(
        data_dir=tmp_path / "keyvault",
        identity_endpoint=identity.endpoint,
        credentials=await platform_credentials(operator, channel, clock, "keyvault"),
        port=0,
        dev_time_control=dev_time_control,
        database_url=database_url,
        http_port=keyvault_http_port,
    )
    server = await build_keyvault(config, clock=clock, tracer_provider=tracer_provider)
    try:
        yield server
    finally:
        await server.stop(grace=0)
