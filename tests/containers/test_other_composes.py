"""The same compose.yaml under docker-compose 1.29 (Debian's, through podman's socket), and
the replicas profile (compose.replicas.yaml: PostgreSQL and two replicas of each service
behind one name) under Compose v2 and docker-compose 1.29: each brought up, the seed walked
from the host, and Microsoft's Python SDKs run from the host both ways (azure_sdks.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.containers import engine
from tests.containers.azure_sdks import witness_the_sdks
from tests.containers.stack import REPLICAS_PUBLISHED, SERVICES, Stack
from tests.faults.world import prepare_world

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def compose_v1(container_engine: None) -> Iterator[Stack]:
    stack = Stack(engine.COMPOSE_V1, [ROOT / "compose.yaml"])
    try:
        yield stack
    finally:
        stack.close()


@pytest.fixture(params=[engine.COMPOSE_V2, engine.COMPOSE_V1])
def replicas(container_engine: None, request: pytest.FixtureRequest) -> Iterator[Stack]:
    stack = Stack(request.param, [ROOT / "compose.replicas.yaml"], published=REPLICAS_PUBLISHED)
    try:
        yield stack
    finally:
        stack.close()


async def test_docker_compose_1_29_brings_up_the_same_file(
    compose_v1: Stack, tmp_path: Path, container_figures: dict[str, Any]
):
    assert engine.run_quietly([*engine.compose_command(engine.COMPOSE_V1), "version", "--short"],
                              compose_v1.env).startswith("1.29")  # fmt: skip
    container_figures["up_v1_s"] = round(compose_v1.up(), 1)
    for service in SERVICES:
        await compose_v1.wait_serving(service)
    compose_v1.walk_the_seed(tmp_path)
    container_figures.setdefault("sdk_walk_s", {})["compose.yaml, docker-compose 1.29"] = await witness_the_sdks(
        compose_v1
    )


async def test_the_replicas_profile_walks_the_seed_over_balanced_replicas(
    replicas: Stack, tmp_path: Path, container_figures: dict[str, Any]
):
    took = round(replicas.up(), 1)
    if replicas.flavour == engine.COMPOSE_V2:
        container_figures["up_replicas_s"] = took
    for service in SERVICES:
        await replicas.wait_serving(service)  # every replica of it
    replicas.walk_the_seed(tmp_path)  # the stored ciphertext read by speech from PostgreSQL
    # The SDKs: explicitly at the second replicas' doors, and through the one proxy, which
    # tunnels each name to its replicas behind one name.
    walked = await witness_the_sdks(replicas, replica=2)
    flavour = "Compose v2" if replicas.flavour == engine.COMPOSE_V2 else "docker-compose 1.29"
    container_figures.setdefault("sdk_walk_s", {})[f"replicas profile, {flavour}"] = walked

    # Clients balance over the replicas behind a name: the host's over speech's (a list of
    # endpoints), and speech's over the vault's (dns:///keyvault). While the host makes ten
    # enables of customer-managed keys through speech, and calls nothing else, both speech
    # replicas serve calls and both vault replicas serve speech's. (Counted over all methods
    # but the health checks: round robin alternates call by call, so with a fixed sequence of
    # calls per enable one method can land on one replica every time.)
    world = await prepare_world(replicas.endpoints(), replicas.operator(), dial=replicas.dial)
    try:
        before = {name: served_calls(replicas, name) for name in BALANCED}
        for i in range(10):
            made = await world.speech.create_resource(world.subscription_id, "rg", f"balanced-{i}", "westeurope")
            await world.speech.set_encryption(
                made.name, key_uri=world.key_uri, key_subscription_id=world.subscription_id
            )
        served = {name: served_calls(replicas, name) - before[name] for name in BALANCED}
    finally:
        await world.close()
    container_figures.setdefault("replica_calls", {})[replicas.flavour] = served
    assert all(count > 0 for count in served.values()), f"calls served per replica: {served}"

    # Each service's role reaches its own database and no other's, and is no superuser.
    database = f"postgresql://cmk_speech@127.0.0.1:{replicas.ports['postgres']}/cmk_speech"
    password = replicas.database_password("speech")
    conn = await asyncpg.connect(database, password=password)
    try:
        assert not await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        assert await conn.fetchval("SELECT count(*) FROM cmk_speech.resources") >= 1
    finally:
        await conn.close()
    for other in ("cmk_keyvault", "cmk_identity"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await asyncpg.connect(database.rsplit("/", 1)[0] + f"/{other}", password=password)


BALANCED = ("speech-1", "speech-2", "keyvault-1", "keyvault-2")


def served_calls(stack: Stack, service: str) -> float:
    """The calls a replica has served but for health checks, from its own metrics (read
    inside its container)."""
    script = (
        "import urllib.request, json\n"
        "text = urllib.request.urlopen('http://127.0.0.1:9464/metrics', timeout=5).read().decode()\n"
        "print(json.dumps(sum(float(l.rsplit(' ', 1)[1]) for l in text.splitlines()"
        " if l.startswith('grpc_server_handled_total{') and 'grpc.health' not in l)))\n"
    )
    return float(json.loads(engine.podman("exec", stack.container(service), "python", "-c", script)))
