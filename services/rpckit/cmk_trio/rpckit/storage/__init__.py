"""Storage that the three services share, on either engine: SQLite (the default, one process
per database file) or PostgreSQL (any number of replicas on one database).

A service writes its SQL once, with `?` placeholders, against `Transaction` and `Database`;
the engines differ only in what is below them. Each service writes its schema's changes once
for both engines (`storage.schema`), which gives each engine its ordered migrations; opening a
database applies the ones it has not seen (on PostgreSQL under a lock, so replicas that start
together migrate once). `SqlStore` and `SqlUnitOfWork` are what the three services' stores
share: open, migrate, close, the change signal that read caches key on, and a unit of work
around the writes that must commit together. Nothing outside the storage modules sees a
connection, a cursor or SQL.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, Self, TypeVar, cast

from cmk_trio.rpckit import json_input
from cmk_trio.rpckit.errors import invalid_field
from cmk_trio.rpckit.events import ChangeNotifier
from cmk_trio.rpckit.reasons import Reason

if TYPE_CHECKING:  # (storage.schema builds on Migration below)
    from cmk_trio.rpckit.storage.schema import Schema

T = TypeVar("T")

CHANGES = "changes"
"""The topic of every write that read caches must learn of."""
AUDIT = "audit"
"""The topic of audit appends: watchers of the audit log wake, read caches stay."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of a schema on one engine: its version (1, 2, ...) and the SQL statements that
    make it, as the engine runs them (`storage.schema` writes them once for both engines)."""

    version: int
    description: str
    statements: tuple[str, ...]


def check_migrations(migrations: Iterable[Migration]) -> list[Migration]:
    """The migrations in order; refused unless they are numbered 1, 2, 3, ... without gaps."""
    steps = sorted(migrations, key=lambda m: m.version)
    if [m.version for m in steps] != list(range(1, len(steps) + 1)):
        raise ValueError("migrations must be numbered 1, 2, 3, ... without gaps")
    return steps


SqlValue = str | int | float | bytes | None
"""What a statement's parameters may be, on both engines."""


class Row(Protocol):
    """A row of a result: by column name or by position. A column's type is set by the SQL
    that read it, which a type checker cannot see: the Any is that column, and the code that
    turns rows into objects converts each (`str(r["name"])`, `int(r[0])`)."""

    def __getitem__(self, key: str | int, /) -> Any: ...  # a column: typed by the SQL (above)

    def __iter__(self) -> Iterator[Any]: ...  # (columns, as above)


class Transaction(Protocol):
    """The statements of one write transaction, on whichever engine."""

    async def execute(self, sql: str, params: Sequence[SqlValue] = (), *, announce: str | None = CHANGES) -> int:
        """Run one statement; returns how many rows it changed. Unless `announce` is None,
        the commit is announced on that topic (to this process and to the other replicas)."""
        ...

    async def execute_many(
        self, sql: str, rows: Sequence[Sequence[SqlValue]], *, announce: str | None = CHANGES
    ) -> None:
        """Run one statement for each row of parameters."""
        ...

    async def fetch_all(self, sql: str, params: Sequence[SqlValue] = ()) -> list[Row]: ...

    async def fetch_one(self, sql: str, params: Sequence[SqlValue] = ()) -> Row | None: ...


class Database(Protocol):
    """An open database: reads, write transactions, and the change signals of its topics."""

    engine: str
    """"sqlite" or "postgres"."""
    description: str
    """Where it is, for messages (a path, or a server and schema; never a password)."""

    async def fetch_all(self, sql: str, params: Sequence[SqlValue] = ()) -> list[Row]: ...

    async def fetch_one(self, sql: str, params: Sequence[SqlValue] = ()) -> Row | None: ...

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """A write transaction: committed if the block returns, rolled back if it raises.
        Write transactions of one database run one at a time, in every engine and across
        replicas: what one reads (the head of a log, a policy it changes) stays as read until
        it commits, and sequence numbers commit in the order they were taken."""
        ...

    def signal(self, topic: str) -> ChangeNotifier:
        """What goes up after every commit announced on `topic`, by this process or another."""
        ...

    def leadership(self, name: str) -> Leadership:
        """The lease on the background work called `name`: held by one process at a time."""
        ...

    def exclusive(self, name: str) -> AbstractAsyncContextManager[None]:
        """Held by one process at a time (what replicas that start together do once: make
        the first keys, the operator)."""
        ...

    instance: str
    """This process among the replicas (a SQLite file has one)."""

    async def replica_alive(self, instance: str) -> bool:
        """Whether the replica `instance` still runs."""
        ...

    async def schema_version(self) -> int: ...

    async def close(self) -> None: ...


class Leadership(Protocol):
    """Whether this process holds the lease on some background work. Background loops look
    before each round and skip it when they do not hold it."""

    @property
    def held(self) -> bool: ...


class Store(Protocol):
    """What every service's store is, whatever else it reads and writes."""

    @property
    def generation(self) -> int:
        """What a read cache keys on: goes up with every committed change (of any replica),
        and never repeats while the change signal from other replicas is lost."""
        ...

    @property
    def changes(self) -> ChangeNotifier:
        """Goes up after every committed change, made by this process or another replica."""
        ...

    @property
    def engine(self) -> str:
        """ "sqlite" or "postgres"."""
        ...

    @property
    def description(self) -> str:
        """Where the store is, for messages (never a password)."""
        ...

    def signal(self, topic: str) -> ChangeNotifier:
        """Goes up after every commit announced on `topic`."""
        ...

    def leadership(self, name: str = "background") -> Leadership:
        """The lease on background work: held by one replica at a time."""
        ...

    def exclusive(self, name: str) -> AbstractAsyncContextManager[None]:
        """Held by one replica at a time: what replicas starting together must do once."""
        ...

    async def replica_alive(self, instance: str) -> bool:
        """Whether the replica `instance` (a `store.instance` of some process) still runs."""
        ...

    @property
    def instance(self) -> str:
        """This process among the replicas of the service."""
        ...

    async def close(self) -> None: ...


class AlwaysLeader:
    """The lease of a database only one process uses (SQLite): always held."""

    held = True


def is_database_url(location: str | Path) -> bool:
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


async def open_database(
    location: str | Path,
    *,
    service: str,
    sqlite: Iterable[Migration],
    postgres: Iterable[Migration] = (),
    must_exist: bool = False,
) -> Database:
    """The database at `location` (a SQLite file path, or a postgresql:// URL), migrated.
    `must_exist`: the service's key files show it held data, so an empty PostgreSQL schema is
    refused (a SQLite file is checked before, with its data directory)."""
    if is_database_url(location):
        # Imported here: only replicas need the driver, and the module imports this package.
        from cmk_trio.rpckit.storage.postgres import open_postgres

        return await open_postgres(
            str(location), service=service, migrations=check_migrations(postgres), must_exist=must_exist
        )
    from cmk_trio.rpckit.storage.sqlite import open_sqlite  # (it imports this package: a cycle at the top)

    return await open_sqlite(Path(location), check_migrations(sqlite))


class SqlUnitOfWork:
    """The writes of one transaction. A service's unit of work subclasses it with the changes
    its domain makes; they all commit when the `unit_of_work()` block ends, or none does."""

    def __init__(self, tx: Transaction) -> None:
        self._tx = tx


U = TypeVar("U", bound=SqlUnitOfWork)


class SqlStore(Generic[U]):
    """The base of a service's store: opened with the service's migrations, the change
    signal read caches key on, and `unit_of_work()` for changes."""

    service: ClassVar[str] = ""
    """The service's name: its schema on PostgreSQL is named after it."""
    schema: ClassVar[Schema]
    """The service's tables, written once; each engine runs its own migrations of them."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._before_commit: list[Callable[[U], Awaitable[None]]] = []
        self._after_commit: list[Callable[[], Awaitable[None]]] = []
        self.changes = db.signal(CHANGES)
        """Goes up after every committed change, made here or by another replica."""

    @classmethod
    async def open(cls, location: str | Path, *, must_exist: bool = False) -> Self:
        """Open (creating if needed) the database at `location`, migrated to this program's schema."""
        return cls(
            await open_database(
                location,
                service=cls.service,
                sqlite=cls.schema.migrations("sqlite"),
                postgres=cls.schema.migrations("postgres"),
                must_exist=must_exist,
            )
        )

    @property
    def engine(self) -> str:
        return self._db.engine

    @property
    def instance(self) -> str:
        return self._db.instance

    async def replica_alive(self, instance: str) -> bool:
        return await self._db.replica_alive(instance)

    @property
    def description(self) -> str:
        return self._db.description

    def signal(self, topic: str) -> ChangeNotifier:
        return self._db.signal(topic)

    def leadership(self, name: str = "background") -> Leadership:
        return self._db.leadership(name)

    def exclusive(self, name: str) -> AbstractAsyncContextManager[None]:
        return self._db.exclusive(name)

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

    def _begin(self, tx: Transaction) -> U:
        """The service's unit of work over the transaction `tx`."""
        raise NotImplementedError

    async def close(self) -> None:
        await self._db.close()

    @property
    def generation(self) -> int:
        """What a read cache keys on: it goes up with every committed change (of any replica),
        and never repeats while the change signal from other replicas is lost."""
        return self.changes.cache_version()

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


def gapless(items: Sequence[T], after: int, sequence_of: Callable[[T], int]) -> list[T]:
    """The run of `items` (read in sequence order) that follows `after` without a gap.

    A log's sequence numbers are taken in order by writers that commit one at a time, so a
    gap can only be a number whose transaction has not committed yet (a reader on another
    connection may see 11 before 10 commits). Reading past it would make a follower skip 10
    for good; stopping before it, the follower reads 10 and 11 on its next look."""
    run: list[T] = []
    expected = after + 1
    for item in items:
        if sequence_of(item) != expected:
            break
        run.append(item)
        expected += 1
    return run


DEFAULT_MAX_AGE = 10.0
"""Seconds a cached row is served without being read again, whatever the change signal says:
the backstop should a change ever go unannounced."""


class ReadCache:
    """Rows read once per change: an entry is used only while `version()` still returns what
    it returned before the row was read (a store's generation, or a service's change
    notifier), and for at most `max_age` seconds. Absent rows are not cached."""

    def __init__(
        self,
        version: Callable[[], int],
        limit: int = 10_000,
        *,
        max_age: float = DEFAULT_MAX_AGE,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._version = version
        self._limit = limit
        self._max_age = max_age
        self._monotonic = monotonic
        self._entries: dict[tuple[str, ...], tuple[int, float, object]] = {}
        self.hits = 0

    async def get(self, key: tuple[str, ...], load: Callable[[], Awaitable[T | None]]) -> T | None:
        version = self._version()
        entry = self._entries.get(key)
        if entry is not None and entry[0] == version and self._monotonic() - entry[1] < self._max_age:
            self.hits += 1
            return cast(T, entry[2])
        read_at = self._monotonic()
        value = await load()
        if value is not None and self._version() == version:
            if len(self._entries) >= self._limit:
                self._entries.clear()
            self._entries[key] = (version, read_at, value)
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
        if "\x00" in data["a"]:  # no key we issue has one, and PostgreSQL's text takes none
            raise ValueError
        return str(data["a"])
    except (ValueError, UnicodeError):
        raise invalid_field(
            "page_token", Reason.PAGE_TOKEN_INVALID, "not a page token of this listing; start again without one"
        ) from None
