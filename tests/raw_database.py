"""A service's tables read (or tampered with) around the service, on whichever engine it was
given: its SQLite file, or its schema on PostgreSQL. For the tests of what is at rest, of
what a refused call left behind, and of what tampering does."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg

from cmk_trio.rpckit.storage import is_database_url
from cmk_trio.rpckit.storage.postgres import parse_database_url, to_postgres

Query = Callable[[str, Sequence[Any]], Awaitable[list[tuple[Any, ...]]]]


@asynccontextmanager
async def reader(location: str | Path, service: str) -> AsyncIterator[Query]:
    """One connection around the service, for several queries (written with ? placeholders)."""
    if is_database_url(location):
        target = parse_database_url(str(location), service)
        conn = await asyncpg.connect(target.dsn, server_settings={"search_path": target.schema})

        async def pg_query(sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
            return [tuple(r) for r in await conn.fetch(to_postgres(sql), *params)]

        try:
            yield pg_query
        finally:
            await conn.close()
        return
    db = sqlite3.connect(f"file:{location}?mode=ro", uri=True)

    async def sqlite_query(sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in db.execute(sql, params).fetchall()]

    try:
        yield sqlite_query
    finally:
        db.close()


async def rows(location: str | Path, service: str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """The rows of one query, as tuples."""
    async with reader(location, service) as query:
        return await query(sql, params)


async def execute(location: str | Path, service: str, sql: str, params: Sequence[Any] = ()) -> None:
    """One statement, committed (tampering behind the service's back)."""
    if is_database_url(location):
        target = parse_database_url(str(location), service)
        conn = await asyncpg.connect(target.dsn, server_settings={"search_path": target.schema})
        try:
            await conn.execute(to_postgres(sql), *params)
        finally:
            await conn.close()
        return
    with sqlite3.connect(location) as db:
        db.execute(sql, params)
    db.close()


async def _tables(location: str | Path, service: str, query: Query) -> list[str]:
    if is_database_url(location):
        schema = parse_database_url(str(location), service).schema
        sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = ? ORDER BY table_name"
        found = await query(sql, (schema,))
    else:
        found = await query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name", ())
    return [str(r[0]) for r in found]


async def row_counts(location: str | Path, service: str) -> dict[str, int]:
    async with reader(location, service) as query:
        return {
            table: int((await query(f'SELECT COUNT(*) FROM "{table}"', ()))[0][0])  # noqa: S608 (our tables)
            for table in await _tables(location, service, query)
        }


async def digests(location: str | Path, service: str, query: Query, skip: Iterable[str] = ()) -> dict[str, str]:
    """A digest of each table's content (but those in `skip`), read through `query` (a
    `reader` kept open by a caller that digests often)."""
    found = {}
    for table in await _tables(location, service, query):
        if table not in set(skip):
            content = await query(f'SELECT * FROM "{table}" ORDER BY 1', ())  # noqa: S608 (our tables)
            found[table] = hashlib.sha256(repr(content).encode()).hexdigest()
    return found


async def stored_bytes(location: str | Path, service: str) -> bytes:
    """Everything the service's database holds, as bytes: the SQLite file with its WAL, or
    every row of every table of its PostgreSQL schema (text as UTF-8, binary as it is). What a
    test searches for plaintext secrets; never empty, or the wrong database was read."""
    if is_database_url(location):
        parts = []
        async with reader(location, service) as query:
            for table in await _tables(location, service, query):
                for row in await query(f'SELECT * FROM "{table}"', ()):  # noqa: S608 (our tables)
                    parts += [v if isinstance(v, bytes) else str(v).encode() for v in row]
        found = b"\x00".join(parts)
    else:
        path = Path(location)
        found = b"".join(p.read_bytes() for p in sorted(path.parent.glob(f"{path.name}*")))
    if not found:
        raise AssertionError(f"nothing stored at {location}")
    return found


SPEECH_SEALED = (
    "SELECT sealed_configuration FROM applications ORDER BY seq",
    "SELECT sealed FROM luis_keys ORDER BY resource_uid",
)


async def speech_sealed_values(location: str | Path) -> list[bytes]:
    """Every sealed application configuration, then every sealed LUIS key pair, that speech's
    database holds."""
    async with reader(location, "speech") as query:
        return [bytes(row[0]) for sql in SPEECH_SEALED for row in await query(sql, ())]
