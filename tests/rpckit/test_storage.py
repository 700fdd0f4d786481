"""Storage on either engine: migrations applied once and in order, transactions, read caches
that never serve what a later commit changed, page tokens; SQLite's WAL and sync."""

from __future__ import annotations

import asyncio

import pytest

from cmk_trio.rpckit.errors import InvalidArgument
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.storage import (
    CHANGES,
    Database,
    Migration,
    ReadCache,
    decode_page_token,
    encode_page_token,
    open_database,
    page_size_of,
)

V1 = Migration(1, "things", ("CREATE TABLE things (id TEXT PRIMARY KEY)",))
V2 = Migration(2, "labels", ("ALTER TABLE things ADD COLUMN label TEXT NOT NULL DEFAULT ''",))


async def open_things(location, migrations=(V1, V2)) -> Database:
    """A database with the test schema, on either engine (the same migrations fit both)."""
    return await open_database(location, service="things", sqlite=migrations, postgres=migrations)


async def test_migrations_apply_once_and_in_order(store_location):
    db = await open_things(store_location, [V1])
    assert await db.schema_version() == 1
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO things (id) VALUES ('a')")
    await db.close()
    db = await open_things(store_location, [V2, V1])
    assert await db.schema_version() == 2
    assert [tuple(r) for r in await db.fetch_all("SELECT id, label FROM things")] == [("a", "")]
    await db.close()


async def test_the_sqlite_file_is_private_and_in_wal_mode(tmp_path):
    path = tmp_path / "db.sqlite"
    db = await open_things(path)
    row = await db.fetch_one("PRAGMA journal_mode")
    assert row is not None and row[0] == "wal"
    await db.close()
    assert path.stat().st_mode & 0o777 == 0o600


async def test_a_newer_schema_is_refused(store_location):
    await (await open_things(store_location, [V1, V2])).close()
    with pytest.raises(RuntimeError, match="newer"):
        await open_things(store_location, [V1])


async def test_migrations_must_be_dense(tmp_path):
    with pytest.raises(ValueError, match="without gaps"):
        await open_things(tmp_path / "x.sqlite", [V2])


async def test_a_failed_transaction_changes_nothing(store_location):
    db = await open_things(store_location, [V1])

    async def insert_then_fail() -> None:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO things (id) VALUES ('a')")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await insert_then_fail()
    assert await db.fetch_all("SELECT * FROM things") == []
    await db.close()


@pytest.fixture
async def db(store_location):
    opened = await open_things(store_location)
    yield opened
    await opened.close()  # also when the test fails: an open connection keeps the process alive


async def test_a_read_cache_never_serves_what_a_later_commit_changed(db):
    reads = ReadCache(db.signal(CHANGES).cache_version)
    loads = 0

    async def label(thing: str) -> str | None:
        nonlocal loads
        loads += 1
        row = await db.fetch_one("SELECT label FROM things WHERE id = ?", (thing,))
        return None if row is None else str(row[0])

    async def write(sql: str) -> None:
        async with db.transaction() as tx:
            await tx.execute(sql)

    assert await reads.get(("thing", "a"), lambda: label("a")) is None
    assert await reads.get(("thing", "a"), lambda: label("a")) is None
    assert loads == 2  # absent rows are looked up every time
    await write("INSERT INTO things (id, label) VALUES ('a', 'one')")
    assert await reads.get(("thing", "a"), lambda: label("a")) == "one"
    assert await reads.get(("thing", "a"), lambda: label("a")) == "one"
    assert (loads, reads.hits) == (3, 1)
    await write("UPDATE things SET label = 'two' WHERE id = 'a'")
    assert await reads.get(("thing", "a"), lambda: label("a")) == "two"

    async def label_while_someone_commits(thing: str) -> str | None:
        found = await label(thing)  # read before the commit below: must not be kept
        await write("UPDATE things SET label = 'three' WHERE id = 'a'")
        return found

    assert await reads.get(("racing", "a"), lambda: label_while_someone_commits("a")) == "two"
    assert await reads.get(("racing", "a"), lambda: label("a")) == "three"

    async def fail() -> None:
        async with db.transaction() as tx:
            await tx.execute("UPDATE things SET label = 'four' WHERE id = 'a'")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await fail()
    hits = reads.hits
    assert await reads.get(("racing", "a"), lambda: label("a")) == "three"
    assert reads.hits == hits + 1  # a rolled-back transaction changes nothing, so keeps the entry


def test_page_tokens_round_trip_and_refuse_others():
    token = encode_page_token("tenants", "abc")
    assert decode_page_token("tenants", token) == "abc"
    assert decode_page_token("tenants", "") is None
    for bad in ("x", "!!!", encode_page_token("principals", "abc")):
        with pytest.raises(InvalidArgument) as caught:
            decode_page_token("tenants", bad)
        assert caught.value.reason is Reason.PAGE_TOKEN_INVALID


def test_page_sizes():
    assert page_size_of(0) == 50
    assert page_size_of(5000) == 1000
    with pytest.raises(InvalidArgument):
        page_size_of(-1)


async def test_every_commit_is_synced_to_disk(tmp_path):
    db = await open_things(tmp_path / "s.db")
    try:
        synchronous, journal = await db.fetch_one("PRAGMA synchronous"), await db.fetch_one("PRAGMA journal_mode")
        assert synchronous is not None and tuple(synchronous) == (2,)  # FULL
        assert journal is not None and tuple(journal) == ("wal",)
    finally:
        await db.close()


async def test_a_write_whose_caller_goes_away_at_any_await_leaves_the_database_writable(db):
    """A caller cancelled at whatever await of a write transaction (taking the writer, BEGIN,
    a statement, COMMIT, the rollback) leaves nothing half-open: the next write commits.
    (On SQLite a cancellation during BEGIN left the connection inside a transaction, and
    every later write failed with "cannot start a transaction within a transaction".)"""

    async def write(thing: str) -> None:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO things (id) VALUES (?)", (thing,))
            await tx.execute("UPDATE things SET label = 'x' WHERE id = ?", (thing,))

    committed = 0
    for steps in range(40):  # cancel after 0, 1, 2, ... turns of the loop: every await in turn
        task = asyncio.create_task(write(f"cancelled-{steps}"))
        for _ in range(steps):
            await asyncio.sleep(0)
        task.cancel()
        try:
            await task
            committed += 1  # finished before the cancellation arrived
        except asyncio.CancelledError:
            pass
        async with asyncio.timeout(10):
            await write(f"after-{steps}")
    rows = {r[0] for r in await db.fetch_all("SELECT id FROM things")}
    assert {f"after-{steps}" for steps in range(40)} <= rows
    # Every cancelled write either committed whole or left nothing.
    half = await db.fetch_all("SELECT id FROM things WHERE label != 'x'")
    assert half == []
    assert committed < 40  # some were cancelled mid-way, or the test proved nothing


async def test_a_read_sees_only_what_has_committed(db):
    """A read made while a write transaction is open sees none of its statements, and after
    the transaction rolls back there is nothing it could have cached. (On SQLite reads shared
    the writer's connection, and a read queued between the statements saw them.)"""
    inserted, release = asyncio.Event(), asyncio.Event()

    async def write_then_fail() -> None:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO things (id, label) VALUES ('granted', 'x')")
            inserted.set()
            await release.wait()
            raise RuntimeError("the audit record could not be written")

    writer = asyncio.create_task(write_then_fail())
    await inserted.wait()
    assert await db.fetch_all("SELECT id FROM things") == []
    assert await db.fetch_one("SELECT id FROM things WHERE id = 'granted'") is None
    release.set()
    with pytest.raises(RuntimeError):
        await writer
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO things (id, label) VALUES ('kept', 'y')")
    assert [tuple(r) for r in await db.fetch_all("SELECT id, label FROM things")] == [("kept", "y")]
