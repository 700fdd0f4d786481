"""A PostgreSQL database of the test run's own, on the server CMK_TEST_POSTGRES_URL names
(default: the one on 127.0.0.1:5432, user postgres). The run creates `cmk_test_<random>` on
that server and drops it at its end; each test gets schemas of its own in it (a fresh
`schema_prefix`), so tests share nothing.

Without a server, the PostgreSQL tests are skipped and say why, unless CMK_REQUIRE_POSTGRES
is set (`.ci/run` sets it): then they fail.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

SERVER_ENV = "CMK_TEST_POSTGRES_URL"
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
REQUIRE_ENV = "CMK_REQUIRE_POSTGRES"
ENGINE_ENV = "CMK_TEST_ENGINE"
"""`postgres` runs every service of every test on PostgreSQL (`.ci/run` runs the suite so once more)."""


def server_url() -> str:
    return os.environ.get(SERVER_ENV) or DEFAULT_SERVER


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}", query=""))


async def _admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


_run_database: str | None = None


def run_database() -> str:
    """The run's database, made at its first use; its URL. Skips (or fails, if required)
    without a server."""
    global _run_database
    if _run_database is None:
        _run_database = create_run_database()
    return _run_database


def drop_run_database_if_made() -> None:
    global _run_database
    if _run_database is not None:
        drop_run_database(_run_database)
        _run_database = None


def database_url_for_a_test() -> str:
    """What a service of a test keeps its tables in: "" (a SQLite file in its data directory)
    or, with CMK_TEST_ENGINE=postgres, schemas of its own in the run's database."""
    return "" if engine() == "sqlite" else fresh_schemas(run_database())


def create_run_database() -> str:
    """A new database for this run; its URL. Skips (or fails, if required) without a server."""
    url = server_url()
    name = f"cmk_test_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_admin(url, f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        message = (
            f"no PostgreSQL server to test against at {urlsplit(url).hostname}:{urlsplit(url).port or 5432} "
            f"({type(exc).__name__}); point {SERVER_ENV} at one (postgresql://USER@HOST:PORT/DATABASE)"
        )
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(message)
        pytest.skip(message)
    return with_database(url, name)


def drop_run_database(url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    asyncio.run(_admin(server_url(), f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def fresh_schemas(database_url: str) -> str:
    """The run database's URL with a schema prefix no other test uses."""
    return f"{database_url}?schema_prefix=t{uuid.uuid4().hex[:12]}"


def engine() -> str:
    chosen = os.environ.get(ENGINE_ENV, "sqlite")
    if chosen not in ("sqlite", "postgres"):
        raise pytest.UsageError(f"{ENGINE_ENV} must be sqlite or postgres, not {chosen!r}")
    return chosen
