"""What replicas on one PostgreSQL database need of each other, on a real server: one
migration however many start together, a change signal that reaches the other replicas and
fails closed when lost, writers that commit one at a time, and one holder of a lease."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest

from cmk_trio.rpckit.errors import Unavailable
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.storage import CHANGES, Migration, ReadCache, open_database
from cmk_trio.rpckit.storage.postgres import PostgresDatabase, parse_database_url, to_postgres
from tests.partition import Link
from tests.waiting import eventually

THINGS = (Migration(1, "things", ("CREATE TABLE things (id TEXT PRIMARY KEY, label TEXT NOT NULL)",)),)


async def open_replica(url: str) -> PostgresDatabase:
    db = await open_database(url, service="things", sqlite=THINGS, postgres=THINGS)
    assert isinstance(db, PostgresDatabase)
    return db


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait until `condition` holds (the bound only guards against hanging; never a measure)."""

    async def check() -> bool | None:
        return True if condition() else None

    await eventually(check, what)


@pytest.fixture
async def replicas(postgres_url: str) -> AsyncIterator[tuple[PostgresDatabase, PostgresDatabase]]:
    a, b = await open_replica(postgres_url), await open_replica(postgres_url)
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def terminate(postgres_url: str, role: str, db: PostgresDatabase) -> None:
    """Cut one of `db`'s own connections from the server's side, as a failover or an
    administrator would."""
    schema = parse_database_url(postgres_url, "things").schema
    conn = await asyncpg.connect(urlsplit(postgres_url)._replace(query="").geturl())
    try:
        ended = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
            f"cmk {schema} {role} {db.instance[:12]}",
        )
    finally:
        await conn.close()
    assert ended == 1


def test_placeholders_become_numbered_outside_literals():
    assert to_postgres("SELECT ? , '?' FROM t WHERE a = ? AND b LIKE '%?%'") == (
        "SELECT $1 , '?' FROM t WHERE a = $2 AND b LIKE '%?%'"
    )


def test_the_url_names_the_schema_and_keeps_our_parameters_from_the_driver():
    target = parse_database_url("postgresql://u:secret@db.example:6432/cmk?schema_prefix=blue&pool_size=4", "keyvault")
    assert (target.schema, target.pool_size) == ("blue_keyvault", 4)
    assert parse_qs(urlsplit(target.dsn).query) == {}
    assert "secret" not in target.description and "blue_keyvault" in target.description


async def test_replicas_starting_together_migrate_once(postgres_url: str):
    opened = await asyncio.gather(*(open_replica(postgres_url) for _ in range(4)))
    try:
        rows = await opened[0].fetch_all("SELECT version FROM schema_migrations")
        assert [r["version"] for r in rows] == [1]
    finally:
        for db in opened:
            await db.close()


async def test_a_change_through_one_replica_reaches_the_caches_of_another(replicas):
    a, b = replicas
    cache = ReadCache(b.signal(CHANGES).cache_version)

    async def label() -> str | None:
        row = await b.fetch_one("SELECT label FROM things WHERE id = 'x'")
        return None if row is None else str(row["label"])

    async with a.transaction() as tx:
        await tx.execute("INSERT INTO things (id, label) VALUES (?, ?)", ("x", "granted"))
    await until(lambda: b.signal(CHANGES).version >= 1, "the insert announced to B")
    assert await cache.get(("x",), label) == "granted"
    assert await cache.get(("x",), label) == "granted" and cache.hits == 1
    seen = b.signal(CHANGES).version
    async with a.transaction() as tx:
        await tx.execute("UPDATE things SET label = ? WHERE id = ?", ("revoked", "x"))
    await until(lambda: b.signal(CHANGES).version > seen, "the update announced to B")
    assert await cache.get(("x",), label) == "revoked"


async def test_a_commit_that_announces_nothing_leaves_caches_alone(replicas):
    a, b = replicas
    async with a.transaction() as tx:
        await tx.execute("INSERT INTO things (id, label) VALUES ('quiet', '')", announce="audit")
    await until(lambda: b.signal("audit").version >= 1, "the audit append announced to B")
    assert b.signal(CHANGES).version == 0


async def test_caches_serve_nothing_while_the_change_signal_is_lost(postgres_url: str, replicas):
    _, b = replicas
    changes = b.signal(CHANGES)
    await terminate(postgres_url, "listen", b)
    await until(lambda: not changes.current, "the lost listener noticed")
    assert changes.cache_version() != changes.cache_version()  # nothing cached matches
    await until(lambda: changes.current, "listening again")  # by itself
    assert changes.cache_version() == changes.cache_version()


async def test_sequence_numbers_commit_in_the_order_they_were_taken(replicas):
    """Writers of all replicas take turns, so MAX()+1 never collides and a number never
    becomes visible before a smaller one."""
    a, b = replicas
    for db in (a, b):
        async with db.transaction() as tx:
            await tx.execute("CREATE TABLE IF NOT EXISTS log (sequence BIGINT PRIMARY KEY)")

    async def append(db: PostgresDatabase) -> None:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO log VALUES ((SELECT COALESCE(MAX(sequence), 0) + 1 FROM log))")
            await asyncio.sleep(0.001)  # hold the turn a moment, as a real change does

    await asyncio.gather(*(append(a if i % 2 else b) for i in range(40)))
    rows = await a.fetch_all("SELECT sequence FROM log ORDER BY sequence")
    assert [r[0] for r in rows] == list(range(1, 41))


async def test_one_replica_holds_the_lease_and_another_takes_it_over(postgres_url: str, replicas):
    a, b = replicas
    leases = (a.leadership("background"), b.leadership("background"))
    await until(lambda: any(lease.held for lease in leases), "a lease holder")
    holder, other = (a, b) if leases[0].held else (b, a)
    await asyncio.sleep(0.5)  # the other keeps trying meanwhile, and must not get it
    assert sum(lease.held for lease in leases) == 1
    await terminate(postgres_url, "lease background", holder)
    await until(lambda: other.leadership("background").held, "the takeover")
    await until(lambda: sum(lease.held for lease in leases) == 1, "one holder")


async def test_a_database_that_stops_answering_fails_calls_as_unavailable_until_it_is_back(postgres_url: str):
    """The store reaches PostgreSQL through a relay the test can break: while nothing gets
    through, reads and writes fail with DATABASE_UNAVAILABLE (not INTERNAL), a failed write
    leaves nothing behind, caches are off; once the server is reachable, all is as before."""
    port = urlsplit(postgres_url).port or 5432
    link = Link(port)
    await link.open()
    db = await open_replica(postgres_url.replace(f":{port}/", f":{link.port}/", 1))
    try:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO things (id, label) VALUES ('kept', '')")
        with socket.socket() as probe:  # a port nobody listens on: the server is "down"
            probe.bind(("127.0.0.1", 0))
            link.target_port = probe.getsockname()[1]
        link.partition()
        link.heal()  # every connection through the relay is dropped, and no new one gets through
        with pytest.raises(Unavailable) as caught:
            await db.fetch_one("SELECT label FROM things WHERE id = 'kept'")
        assert caught.value.reason is Reason.DATABASE_UNAVAILABLE
        with pytest.raises(Unavailable):
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO things (id, label) VALUES ('lost', '')")
        await until(lambda: not db.signal(CHANGES).current, "the lost change signal noticed")
        link.target_port = port
        await until(lambda: db.signal(CHANGES).current, "listening again")
        assert [r["id"] for r in await db.fetch_all("SELECT id FROM things ORDER BY id")] == ["kept"]
    finally:
        await db.close()
        await link.close()


async def test_a_transaction_that_fails_or_is_cancelled_gives_its_connection_back(postgres_url: str):
    db = await open_replica(postgres_url + "&pool_size=1")  # one connection: a leak would hang the next
    try:

        async def fails() -> None:
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO things (id, label) VALUES ('a', '')")
                raise RuntimeError("boom")

        for _ in range(3):
            with pytest.raises(RuntimeError, match="boom"):
                await fails()

        async def held_forever() -> None:
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO things (id, label) VALUES ('b', '')")
                await asyncio.Event().wait()  # a caller whose deadline passes here

        stuck = asyncio.create_task(held_forever())
        await asyncio.sleep(0.1)
        stuck.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stuck
        async with asyncio.timeout(10), db.transaction() as tx:
            await tx.execute("INSERT INTO things (id, label) VALUES ('c', '')")
        assert [r["id"] for r in await db.fetch_all("SELECT id FROM things")] == ["c"]
    finally:
        await db.close()


async def test_a_replica_is_alive_while_it_holds_its_lock(postgres_url: str):
    a, b = await open_replica(postgres_url), await open_replica(postgres_url)
    try:
        assert await b.replica_alive(a.instance) and await b.replica_alive(b.instance)
        await a.close()  # its lock goes with its listening connection, once the server has ended its session

        async def gone() -> bool | None:
            return True if not await b.replica_alive(a.instance) else None

        await eventually(gone, "the closed replica's lock released")
    finally:
        await b.close()


async def test_a_schema_that_should_hold_data_but_is_empty_is_refused_and_left_alone(postgres_url: str):
    from cmk_trio.rpckit.datadir import StartupError

    with pytest.raises(StartupError, match="empty"):
        await open_database(postgres_url, service="things", sqlite=THINGS, postgres=THINGS, must_exist=True)
    db = await open_replica(postgres_url)  # nothing was made by the refusal: this is a first start
    try:
        assert await db.schema_version() == 1
    finally:
        await db.close()


def test_every_driver_error_is_database_unavailable_not_internal():
    """By class, not by a list of the ones seen so far: whatever asyncpg raises (a server
    starting up or shutting down, a client-side failure, a refused statement) reaches a
    caller as DATABASE_UNAVAILABLE, never as INTERNAL."""
    import asyncpg.exceptions as driver

    from cmk_trio.rpckit.storage.postgres import unavailable_on_failure

    classes = [
        value
        for value in vars(driver).values()
        if isinstance(value, type) and issubclass(value, Exception) and not issubclass(value, Warning)
    ]
    assert driver.CannotConnectNowError in classes and driver.InternalClientError in classes
    for cls in [*classes, ConnectionResetError, TimeoutError]:
        with pytest.raises(Unavailable) as caught, unavailable_on_failure("test"):
            raise cls("the database system is starting up")
        assert caught.value.reason is Reason.DATABASE_UNAVAILABLE, cls


class StartingUp:
    """A server that answers every connection as PostgreSQL does while it starts up (after a
    crash, in recovery): an ErrorResponse with SQLSTATE 57P03, then it hangs up."""

    def __init__(self) -> None:
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._answer, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                length = int.from_bytes(await reader.readexactly(4), "big")
                body = await reader.readexactly(length - 4)
                if body[:4] == (80877103).to_bytes(4, "big"):  # SSLRequest: not here
                    writer.write(b"N")
                    continue
                fields = b"SFATAL\0VFATAL\0C57P03\0Mthe database system is starting up\0\0"
                writer.write(b"E" + (len(fields) + 4).to_bytes(4, "big") + fields)
                await writer.drain()
                break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()


async def test_a_server_starting_up_fails_calls_as_unavailable(postgres_url: str):
    """While PostgreSQL starts up after a crash it refuses connections with 57P03
    (asyncpg's CannotConnectNowError): reads and writes answer DATABASE_UNAVAILABLE, which
    clients retry, until it accepts connections again."""
    port = urlsplit(postgres_url).port or 5432
    link, starting = Link(port), StartingUp()
    await link.open()
    await starting.open()
    db = await open_replica(postgres_url.replace(f":{port}/", f":{link.port}/", 1))
    try:
        link.target_port = starting.port
        link.partition()
        link.heal()  # the pool's connections are gone; new ones meet a server starting up
        for _ in range(3):
            with pytest.raises(Unavailable) as caught:
                await db.fetch_one("SELECT label FROM things WHERE id = 'a'")
            assert caught.value.reason is Reason.DATABASE_UNAVAILABLE
            with pytest.raises(Unavailable) as caught:
                async with db.transaction() as tx:
                    await tx.execute("INSERT INTO things (id, label) VALUES ('a', '')")
            assert caught.value.reason is Reason.DATABASE_UNAVAILABLE
        assert starting.connections > 0
        link.target_port = port
        await until(lambda: db.signal(CHANGES).current, "listening again")
        async with asyncio.timeout(10), db.transaction() as tx:
            await tx.execute("INSERT INTO things (id, label) VALUES ('b', '')")
    finally:
        await db.close()
        await link.close()
        await starting.close()
