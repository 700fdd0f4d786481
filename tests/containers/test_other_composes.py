"""The same compose.yaml under docker-compose 1.29 (Debian's, through podman's socket), and
the replicas profile (compose.replicas.yaml: PostgreSQL and two replicas of each service
behind one name) under Compose v2: each brought up, the seed walked from the host."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.containers import engine
from tests.containers.stack import REPLICAS_PUBLISHED, SERVICES, Stack

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def compose_v1(container_engine: None) -> Iterator[Stack]:
    with engine.temporary_directory() as scratch:
        stack = Stack(engine.COMPOSE_V1, [ROOT / "compose.yaml"], scratch)
        try:
            yield stack
        finally:
            stack.close()


@pytest.fixture
def replicas(container_engine: None) -> Iterator[Stack]:
    with engine.temporary_directory() as scratch:
        stack = Stack(engine.COMPOSE_V2, [ROOT / "compose.replicas.yaml"], scratch, published=REPLICAS_PUBLISHED)
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


async def test_the_replicas_profile_walks_the_seed_over_balanced_replicas(
    replicas: Stack, tmp_path: Path, container_figures: dict[str, Any]
):
    container_figures["up_replicas_s"] = round(replicas.up(), 1)
    for service in SERVICES:
        await replicas.wait_serving(service)  # every replica of it
    password = (replicas.volume("pg-secret") / "password").read_text().strip()
    database = f"postgresql://cmk:{password}@127.0.0.1:{replicas.ports['postgres']}/cmk"
    replicas.walk_the_seed(tmp_path, database_url=database)  # the stored ciphertext read from PostgreSQL
    # Both replicas of each service answered calls: the clients (the CLI from the host, and
    # speech and the vault inside) balance over the replicas behind one name.
    for service in ("keyvault", "speech"):
        served = [served_calls(replicas, f"{service}-{r}") for r in (1, 2)]
        assert all(count > 0 for count in served), f"{service}: calls per replica {served}"


def served_calls(stack: Stack, service: str) -> float:
    """The calls a replica has served, from its own metrics (inside its container)."""
    script = (
        "import urllib.request, json\n"
        "text = urllib.request.urlopen('http://127.0.0.1:9464/metrics', timeout=5).read().decode()\n"
        "print(json.dumps(sum(float(l.rsplit(' ', 1)[1]) for l in text.splitlines()"
        " if l.startswith('cmk_requests_total{'))))\n"
    )
    return float(json.loads(engine.podman("exec", stack.container(service), "python", "-c", script)))
