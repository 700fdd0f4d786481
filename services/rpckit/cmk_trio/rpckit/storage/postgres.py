"""The PostgreSQL engine, on asyncpg: any number of replicas of a service on one database.

Each service keeps its tables in its own schema (`cmk_identity`, `cmk_keyvault`,
`cmk_speech`; the prefix is the URL's `schema_prefix`), so the three can share a database.
What replicas need of each other is here, each on a PostgreSQL primitive:

- Write transactions take one advisory lock per schema as they begin, so they commit one at
  a time across replicas, as SQLite's single writer does: a log's head read inside one stays
  the head, and sequence numbers commit in the order they were taken.
- A committing transaction sends NOTIFY on the schema's channel, inside the transaction (so
  it is delivered exactly when the change is visible). One LISTEN connection per process
  turns them into the store's change signals; while it is lost the signals are not current,
  and read caches serve nothing (fail closed) until it is back.
- Background work runs under a lease, a session advisory lock held on a connection of its
  own: one replica at a time, taken over within a few seconds of the holder's death.

asyncpg rather than psycopg 3: it spent less CPU on the unwrap path's statements (`python3
dev.py bench` measures both in every run and writes the figures into BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from cmk_trio.rpckit.datadir import StartupError
from cmk_trio.rpckit.errors import Unavailable
from cmk_trio.rpckit.events import MAX_RETRY_DELAY, ChangeNotifier, jittered
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.storage import CHANGES, Leadership, Migration, Row, SqlValue
from cmk_trio.rpckit.storage.leases import CHECK_TIMEOUT, PostgresLease

log = logging.getLogger(__name__)

DEFAULT_SCHEMA_PREFIX = "cmk"
DEFAULT_POOL_SIZE = 10
CHECK_INTERVAL = 1.0
"""Seconds between the checks that the listening and lease connections are alive."""

# The server notices a client that vanished without closing (a host lost, a cable pulled)
# within about 8 s, and releases its lease, instead of after TCP's two hours.
_KEEPALIVES = {"tcp_keepalives_idle": "5", "tcp_keepalives_interval": "1", "tcp_keepalives_count": "3"}
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,40}")


@dataclass(frozen=True, slots=True)
class PostgresTarget:
    """Where a service's tables are: the server's URL (for the driver), the schema, and how
    many connections a process may hold."""

    dsn: str
    schema: str
    pool_size: int
    description: str


def parse_database_url(url: str, service: str) -> PostgresTarget:
    """A postgresql:// URL as the driver takes it, with our own query parameters taken out:
    `schema_prefix` (the schema is PREFIX_SERVICE) and `pool_size`."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres") or (not parts.hostname and "host=" not in parts.query):
        raise StartupError(f"--database-url must be postgresql://USER@HOST:PORT/DATABASE, not {parts.scheme}://...")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    prefix = query.pop("schema_prefix", DEFAULT_SCHEMA_PREFIX)
    schema = f"{prefix}_{service}"
    if not _IDENTIFIER.fullmatch(schema):
        raise StartupError(f"schema_prefix {prefix!r} must be lower-case letters, digits and underscores")
    try:
        pool_size = int(query.pop("pool_size", DEFAULT_POOL_SIZE))
    except ValueError:
        raise StartupError("pool_size in --database-url must be a whole number") from None
    if not 1 <= pool_size <= 100:
        raise StartupError("pool_size in --database-url must be between 1 and 100")
    dsn = urlunsplit(parts._replace(query=urlencode(query)))
    host = parts.hostname or "localhost"
    where = f"{host}:{parts.port or 5432}{parts.path or '/'}"
    return PostgresTarget(dsn, schema, pool_size, f"postgresql://{where} (schema {schema})")


def _settings(target: PostgresTarget, role: str = "") -> dict[str, str]:
    """A connection's session settings: the service's schema first, an application name that
    says whose connection it is (in pg_stat_activity), and the keepalives."""
    name = f"cmk {target.schema} {role}".rstrip()
    return {"search_path": f"{target.schema}, public", "application_name": name, **_KEEPALIVES}


def lock_key(schema: str, name: str) -> int:
    """The advisory lock key of `name` within a schema (a signed 64-bit number)."""
    digest = hashlib.sha256(f"{schema}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@lru_cache(maxsize=4096)
def to_postgres(sql: str) -> str:
    """SQL written with `?` placeholders (as SQLite takes them) with PostgreSQL's $1, $2, ...
    Question marks inside quoted literals are left alone."""
    out: list[str] = []
    count = 0
    quoted = False
    for char in sql:
        if char == "'":
            quoted = not quoted
        if char == "?" and not quoted:
            count += 1
            out.append(f"${count}")
        else:
            out.append(char)
    return "".join(out)


DRIVER_FAILURES: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
    TimeoutError,
)
"""Everything the driver raises, by its base classes: what the server answered (SQLSTATE),
what the client side noticed, and the socket's own failures. None of it may reach a caller
as INTERNAL, which clients do not retry."""

TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57", "58", "XX"})
"""The SQLSTATE classes of a server that cannot serve now (connection exception, rollback for
serialization or deadlock, insufficient resources, operator intervention such as "the
database system is starting up" or "shutting down", system error, internal error)."""


def transient(exc: BaseException) -> bool:
    """Whether `exc` says the server could not serve now, rather than that it refused a
    statement (which is a defect of ours: logged as one, though answered the same way)."""
    if isinstance(exc, asyncpg.PostgresError):
        state = str(getattr(exc, "sqlstate", "") or "")
        return state[:2] in TRANSIENT_SQLSTATE_CLASSES or state == "55P03"  # lock not available
    return True


@contextmanager
def unavailable_on_failure(description: str) -> Iterator[None]:
    """Turn whatever the driver raises into DATABASE_UNAVAILABLE (a retry may land once the
    server is back; nothing was committed that the caller was told of)."""
    try:
        yield
    except DRIVER_FAILURES as exc:
        if transient(exc):
            log.warning("the database did not answer", extra={"database": description, "error": type(exc).__name__})
        else:
            log.error(
                "the database refused a statement",
                extra={"database": description, "error": type(exc).__name__, "sqlstate": exc.sqlstate},  # type: ignore[attr-defined]
            )
        raise Unavailable(
            Reason.DATABASE_UNAVAILABLE, "the service's database did not answer; retry in a moment"
        ) from None


def _changed_rows(status: str) -> int:
    """How many rows a statement changed, from its command tag ("UPDATE 3", "INSERT 0 1")."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class PostgresTransaction:
    """The statements of one write transaction on a connection of the pool."""

    def __init__(self, conn: asyncpg.Connection, description: str) -> None:
        self._conn = conn
        self._description = description
        self.topics: set[str] = set()

    async def execute(self, sql: str, params: Sequence[SqlValue] = (), *, announce: str | None = CHANGES) -> int:
        with unavailable_on_failure(self._description):
            status = await self._conn.execute(to_postgres(sql), *params)
        if announce is not None:
            self.topics.add(announce)
        return _changed_rows(status)

    async def execute_many(
        self, sql: str, rows: Sequence[Sequence[SqlValue]], *, announce: str | None = CHANGES
    ) -> None:
        with unavailable_on_failure(self._description):
            if len(rows) == 1:  # asyncpg's executemany costs several times a single execute
                await self._conn.execute(to_postgres(sql), *rows[0])
            else:
                await self._conn.executemany(to_postgres(sql), rows)
        if announce is not None:
            self.topics.add(announce)

    async def fetch_all(self, sql: str, params: Sequence[SqlValue] = ()) -> list[Row]:
        with unavailable_on_failure(self._description):
            return list(await self._conn.fetch(to_postgres(sql), *params))

    async def fetch_one(self, sql: str, params: Sequence[SqlValue] = ()) -> Row | None:
        with unavailable_on_failure(self._description):
            row: Row | None = await self._conn.fetchrow(to_postgres(sql), *params)
        return row


class PostgresDatabase:
    """A service's schema on a PostgreSQL server, shared with the service's other replicas."""

    engine = "postgres"

    def __init__(self, target: PostgresTarget, pool: asyncpg.Pool) -> None:
        self.target = target
        self.description = target.description
        self.instance = uuid.uuid4().hex
        """This process, among the replicas (the payload of its notifications)."""
        self._pool = pool
        self._channel = f"{target.schema}_changes"
        self._writer_key = lock_key(target.schema, "writer")
        self._signals: dict[str, ChangeNotifier] = {}
        self._leases: dict[str, PostgresLease] = {}
        self.listening = asyncio.Event()
        self._listener = asyncio.create_task(self._listen(), name=f"listen {self._channel}")
        self.leadership("background")  # tried from the start, so a lone replica leads at once

    def _connect(self, role: str) -> Awaitable[asyncpg.Connection]:
        """A connection of its own for `role` (listen, lease): its application name says whose
        it is, in pg_stat_activity."""
        settings = _settings(self.target, f"{role} {self.instance[:12]}")
        connecting: Awaitable[asyncpg.Connection] = asyncpg.connect(dsn=self.target.dsn, server_settings=settings)
        return connecting

    # --- reads and writes -------------------------------------------------------------

    async def fetch_all(self, sql: str, params: Sequence[SqlValue] = ()) -> list[Row]:
        with unavailable_on_failure(self.description):
            return list(await self._pool.fetch(to_postgres(sql), *params))

    async def fetch_one(self, sql: str, params: Sequence[SqlValue] = ()) -> Row | None:
        with unavailable_on_failure(self.description):
            row: Row | None = await self._pool.fetchrow(to_postgres(sql), *params)
        return row

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTransaction]:
        # The connection, the lock and the commit fail as DATABASE_UNAVAILABLE; what the
        # block itself raises passes through as it is. The connection goes back to the pool
        # whatever happens, a client's deadline included.
        # The pool's release of the connection (a reset query on it) may fail too, after the
        # block: the whole of it is inside the mapping.
        with unavailable_on_failure(self.description):
            async with contextlib.AsyncExitStack() as stack:
                with unavailable_on_failure(self.description):
                    conn = await stack.enter_async_context(self._pool.acquire())
                transaction = conn.transaction()
                topics: set[str] = set()
                committing = False
                try:
                    with unavailable_on_failure(self.description):
                        await transaction.start()
                        await conn.execute("SELECT pg_advisory_xact_lock($1)", self._writer_key)
                    tx = PostgresTransaction(conn, self.description)
                    yield tx
                    topics = tx.topics
                    with unavailable_on_failure(self.description):
                        for topic in sorted(topics):
                            await conn.execute("SELECT pg_notify($1, $2)", self._channel, f"{self.instance} {topic}")
                        committing = True
                        await transaction.commit()
                except BaseException:
                    if not committing:
                        with contextlib.suppress(*DRIVER_FAILURES):
                            await transaction.rollback()
                    raise
                finally:
                    # Once COMMIT was sent, the change may have landed even if its answer did
                    # not: this process's caches forget what they held, as they do after a
                    # commit (the other replicas learn of it from the notification, if any).
                    if committing:
                        for topic in topics:
                            self.signal(topic).bump()

    async def schema_version(self) -> int:
        with unavailable_on_failure(self.description):
            return int(await self._pool.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations"))

    # --- change signals ---------------------------------------------------------------

    def signal(self, topic: str) -> ChangeNotifier:
        found = self._signals.get(topic)
        if found is None:
            found = self._signals[topic] = ChangeNotifier()
            found.current = self.listening.is_set()
        return found

    def _on_notification(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        # Our own come back too: one more bump, harmless (and a backstop for a commit whose
        # answer was lost).
        _instance, _, topic = payload.partition(" ")
        self.signal(topic or CHANGES).bump()

    def _set_current(self, current: bool) -> None:
        if current:
            self.listening.set()
        else:
            self.listening.clear()
        for notifier in self._signals.values():
            notifier.set_current(current)

    async def _listen(self) -> None:
        """Keep one connection listening for the other replicas' changes, forever. While it
        is lost, nothing cached is served; once it is back, everything read before is old."""
        delay = 0.2
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await self._connect("listen")
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(self._channel, self._on_notification)
                # The replica's own lock, held while it lives: how others tell a replica that
                # is working on something from one that died in the middle of it.
                await conn.execute("SELECT pg_advisory_lock($1)", lock_key(self.target.schema, self.instance))
                self._set_current(True)
                delay = 0.2
                while not lost.is_set():
                    async with asyncio.timeout(CHECK_TIMEOUT):
                        await conn.fetchval("SELECT 1")
                    try:
                        await asyncio.wait_for(lost.wait(), CHECK_INTERVAL)
                    except TimeoutError:
                        pass
                log.warning("the change signal's connection was lost; caches are off until it is back")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Said once per outage, not at every try.
                (log.warning if self.listening.is_set() or delay == 0.2 else log.debug)(
                    "cannot listen for changes; caches are off until it can",
                    extra={"error": type(exc).__name__, "database": self.description},
                )
            finally:
                self._set_current(False)
                if conn is not None:
                    conn.terminate()
            # Short waits: caches are off until this is back, and a try costs one connection
            # attempt (refused at once while the server is down).
            await asyncio.sleep(jittered(delay))
            delay = min(delay * 2, MAX_RETRY_DELAY)

    # --- replicas ---------------------------------------------------------------------

    async def replica_alive(self, instance: str) -> bool:
        """Whether the replica `instance` still runs: it holds its own lock while its
        listening connection lives. (A live replica whose connection is being re-established
        looks gone for a moment; whatever another replica takes over from it then is fenced:
        see the speech service's pending steps.)"""
        if instance == self.instance:
            return True
        key = lock_key(self.target.schema, instance)
        with unavailable_on_failure(self.description):
            async with self._pool.acquire() as conn:
                if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", key):
                    return True
                await conn.execute("SELECT pg_advisory_unlock($1)", key)
                return False

    @asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[None]:
        # On a connection of its own: waiting for another replica's start-up may take longer
        # than a statement may on the pool's connections.
        key = lock_key(self.target.schema, f"exclusive:{name}")
        with unavailable_on_failure(self.description):
            conn = await self._connect(f"exclusive {name}")
        try:
            with unavailable_on_failure(self.description):
                await conn.execute("SELECT pg_advisory_lock($1)", key)
            yield
        finally:
            conn.terminate()  # the session's lock goes with it

    def leadership(self, name: str) -> Leadership:
        lease = self._leases.get(name)
        if lease is None:
            role = f"lease {name}"
            lease = self._leases[name] = PostgresLease(
                name, lock_key(self.target.schema, role), lambda: self._connect(role)
            )
        return lease

    async def close(self) -> None:
        for lease in self._leases.values():
            await lease.close()
        self._listener.cancel()
        try:
            await self._listener
        except asyncio.CancelledError:
            pass
        await self._pool.close()


async def open_postgres(
    url: str, *, service: str, migrations: Sequence[Migration], must_exist: bool = False
) -> PostgresDatabase:
    """The service's schema on the server `url` names, created and migrated if needed (once,
    however many replicas start together), with the change signal listening. With
    `must_exist` (the service's key files show it held data), a schema that is not there is
    refused rather than made empty."""
    target = parse_database_url(url, service)
    settings = _settings(target)
    try:
        conn = await asyncpg.connect(target.dsn, server_settings=settings)
    except (OSError, asyncpg.PostgresError) as exc:
        raise StartupError(f"cannot reach PostgreSQL at {target.description}: {_reason(exc)}") from None
    try:
        await _migrate(conn, target, migrations, must_exist)
    except asyncpg.PostgresError as exc:
        raise StartupError(f"cannot prepare {target.description}: {_reason(exc)}") from None
    finally:
        await conn.close()
    # A statement that has not answered in 10 s fails (DATABASE_UNAVAILABLE) rather than hold
    # its call until the caller's deadline: a server cut off silently is noticed.
    pool = await asyncpg.create_pool(
        target.dsn, min_size=1, max_size=target.pool_size, server_settings=settings, command_timeout=10
    )
    db = PostgresDatabase(target, pool)
    try:
        async with asyncio.timeout(10):
            await db.listening.wait()
    except TimeoutError:
        await db.close()
        raise StartupError(f"cannot listen for changes on {target.description}") from None
    return db


async def _migrate(
    conn: asyncpg.Connection, target: PostgresTarget, migrations: Sequence[Migration], must_exist: bool
) -> None:
    schema = target.schema
    async with conn.transaction():
        # Replicas that start together wait here for the first to finish; each then finds
        # the schema at this program's version and applies nothing.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key(schema, "migrate"))
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(f'SET LOCAL search_path = "{schema}", public')
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        current = int(await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations"))
        if must_exist and current == 0:  # (rolled back: nothing is left made)
            raise StartupError(
                f"the key files show this service held data, but {target.description} is empty; check the"
                " --database-url and its schema_prefix, or restore the database from a backup"
            )
        if current > len(migrations):
            raise StartupError(
                f"schema {schema} has version {current}, newer than this program knows ({len(migrations)});"
                " upgrade the program"
            )
        for step in migrations[current:]:
            for statement in step.statements:
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_migrations (version, description) VALUES ($1, $2)", step.version, step.description
            )


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
