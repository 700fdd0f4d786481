"""SQLite storage on aiosqlite: WAL, versioned schema migrations, one writer at a time.

Each service declares its schema as an ordered tuple of migrations; `open_database` applies
the ones a file has not seen, each in its own transaction, and records the version.
`SqliteStore` and `SqliteUnitOfWork` are what the three services' SQLite stores share: open,
migrate, close, the commit counter, and a unit of work around the writes that must commit
together. Nothing outside the storage modules sees a connection, a cursor or SQL.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, Self, TypeVar, cast

import aiosqlite

from cmk_trio.rpckit import json_input
from cmk_trio.rpckit.datadir import StartupError, make_private_dir
from cmk_trio.rpckit.errors import invalid_field
from cmk_trio.rpckit.reasons import Reason

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of a schema: its version (1, 2, ...) and the SQL statements that make it."""

    version: int
    description: str
    statements: tuple[str, ...]


class Database:
    """An open SQLite file. Reads run concurrently; writes go through `transaction()`, which
    serialises them (SQLite allows one writer) and commits or rolls back as a unit."""

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        self._write_lock = asyncio.Lock()
        self.generation = 0
        """Counts committed transactions: a read cache keyed by it never serves what a later
        commit changed."""

    async def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        """All rows of a query, in one hop to the database thread."""
        return list(await self.conn.execute_fetchall(sql, params))

    async def fetch_one(self, sql: str, params: Sequence[Any] = ()) -> aiosqlite.Row | None:
        """The first row of a query, or None."""
        rows = await self.conn.execute_fetchall(sql, params)
        for row in rows:
            return row
        return None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction: committed if the block returns, rolled back if it raises."""
        async with self._write_lock:
            await self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                await self.conn.rollback()
                raise
            await self.conn.commit()
            self.generation += 1  # no await between the commit and this: readers see both or neither

    async def schema_version(self) -> int:
        row = await self.fetch_one("SELECT MAX(version) FROM schema_migrations")
        return int(row[0] or 0) if row else 0

    async def close(self) -> None:
        await self.conn.close()


async def open_database(path: Path, migrations: Iterable[Migration]) -> Database:
    """Open (creating if needed) a SQLite file with WAL and apply pending migrations.

    The file and its WAL sidecars are made readable by the owner only.
    """
    steps = sorted(migrations, key=lambda m: m.version)
    if [m.version for m in steps] != list(range(1, len(steps) + 1)):
        raise ValueError("migrations must be numbered 1, 2, 3, ... without gaps")
    make_private_dir(path.parent)
    old_umask = os.umask(0o077)
    try:
        conn = await aiosqlite.connect(path, isolation_level=None)
    finally:
        os.umask(old_umask)
    # Whatever goes wrong from here closes the connection: its thread would otherwise keep
    # the process alive after the error.
    try:
        return await _prepare(conn, path, steps)
    except sqlite3.DatabaseError as exc:
        await conn.close()
        raise StartupError(f"{path} is not a usable SQLite database ({exc}); restore it from a backup") from None
    except BaseException:
        await conn.close()
        raise


async def _prepare(conn: aiosqlite.Connection, path: Path, steps: Sequence[Migration]) -> Database:
    conn.row_factory = aiosqlite.Row
    await conn.execute("PRAGMA journal_mode=WAL")
    # FULL: every commit reaches the disk (an fsync of the WAL) before the call that made it
    # answers, so an answered change (a revoked policy, an audit record) survives a power
    # loss; NORMAL would survive only a crash of the process. Group commit (the audit log)
    # and the database thread keep the cost off the event loop: about 0.4 ms per commit
    # on the disks we measured.
    await conn.execute("PRAGMA synchronous=FULL")
    await conn.execute("PRAGMA foreign_keys=ON")
    await conn.execute("PRAGMA busy_timeout=5000")
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    db = Database(conn, path)
    current = await db.schema_version()
    if current > len(steps):
        raise StartupError(
            f"{path} has schema version {current}, newer than this program knows ({len(steps)}); upgrade the program"
        )
    for step in steps[current:]:
        async with db.transaction() as tx:
            for statement in step.statements:
                await tx.execute(statement)
            await tx.execute(
                "INSERT INTO schema_migrations (version, description, applied_at)"
                " VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
                (step.version, step.description),
            )
    return db


class SqliteUnitOfWork:
    """The writes of one transaction. A service's unit of work subclasses it with the changes
    its domain makes; they all commit when the `unit_of_work()` block ends, or none does."""

    def __init__(self, tx: aiosqlite.Connection) -> None:
        self._tx = tx


U = TypeVar("U", bound=SqliteUnitOfWork)


class SqliteStore(Generic[U]):
    """The base of a service's SQLite store: opened with the service's migrations, a counter
    of committed changes for read caches, and `unit_of_work()` for changes."""

    migrations: ClassVar[tuple[Migration, ...]] = ()
    """The service's schema, oldest step first."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._before_commit: list[Callable[[U], Awaitable[None]]] = []
        self._after_commit: list[Callable[[], Awaitable[None]]] = []

    def add_commit_hooks(
        self,
        *,
        before: Callable[[U], Awaitable[None]] | None = None,
        after: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Run `before` at the end of every unit of work that is about to commit, inside its
        transaction (what it writes commits with the rest, or nothing does), and `after`
        once it has committed."""
        if before is not None:
            self._before_commit.append(before)
        if after is not None:
            self._after_commit.append(after)

    @classmethod
    async def open(cls, path: Path) -> Self:
        """Open (creating if needed) the database at `path`, migrated to this program's schema."""
        return cls(await open_database(path, cls.migrations))

    def _begin(self, tx: aiosqlite.Connection) -> U:
        """The service's unit of work over the transaction `tx`."""
        raise NotImplementedError

    async def close(self) -> None:
        await self._db.close()

    @property
    def generation(self) -> int:
        """Counts committed units of work: a read cache keyed by it never serves what a later
        commit changed."""
        return self._db.generation

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[U]:
        """A transaction: every write made through the yielded unit of work commits when the
        block returns, and none does if it raises."""
        async with self._db.transaction() as tx:
            uow = self._begin(tx)
            yield uow  # a block that raises rolls back here, before any hook
            for before in self._before_commit:
                await before(uow)
        for after in self._after_commit:
            await after()


class ReadCache:
    """Rows read once per change: an entry is used only while `version()` still returns what
    it returned before the row was read (a commit counter, or a service's change notifier).
    Absent rows are not cached."""

    def __init__(self, version: Callable[[], int], limit: int = 10_000) -> None:
        self._version = version
        self._limit = limit
        self._entries: dict[tuple[str, ...], tuple[int, Any]] = {}
        self.hits = 0

    async def get(self, key: tuple[str, ...], load: Callable[[], Awaitable[T | None]]) -> T | None:
        version = self._version()
        entry = self._entries.get(key)
        if entry is not None and entry[0] == version:
            self.hits += 1
            return cast(T, entry[1])
        value = await load()
        if value is not None and self._version() == version:
            if len(self._entries) >= self._limit:
                self._entries.clear()
            self._entries[key] = (version, value)
        return value


# --- pagination ----------------------------------------------------------------------

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


def page_size_of(requested: int) -> int:
    """The page size to use for a request's page_size (0 means the default)."""
    if requested < 0:
        raise invalid_field("page_size", Reason.PAGE_SIZE_INVALID, "must not be negative")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_page_token(kind: str, after: str) -> str:
    """An opaque token that resumes a listing of `kind` after the key `after`."""
    raw = json.dumps({"k": kind, "a": after}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


MAX_SEQUENCE = 2**63 - 1
"""The largest sequence number SQLite (and a page token over one) can hold."""


def decode_sequence_token(kind: str, token: str) -> int:
    """The sequence number a listing of `kind` resumes after (0 for the first page)."""
    after = decode_page_token(kind, token)
    if after is None:
        return 0
    if not (after.isascii() and after.isdigit() and len(after) <= 19 and int(after) <= MAX_SEQUENCE):
        raise invalid_field("page_token", Reason.PAGE_TOKEN_INVALID, "not a page token of this listing")
    return int(after)


def decode_page_token(kind: str, token: str) -> str | None:
    """The key to resume after, or None for the first page."""
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json_input.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        if not isinstance(data, dict) or data.get("k") != kind or not isinstance(data.get("a"), str):
            raise ValueError
        return str(data["a"])
    except (ValueError, UnicodeError):
        raise invalid_field(
            "page_token", Reason.PAGE_TOKEN_INVALID, "not a page token of this listing; start again without one"
        ) from None
