"""The SQLite engine: one file, WAL, every commit synced, one writer at a time, one process.

Replicas need PostgreSQL: a SQLite file is for one process (the data-directory lock says so),
so the change signals here are in-process only and the lease on background work is always held.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from cmk_trio.rpckit.datadir import StartupError, make_private_dir
from cmk_trio.rpckit.events import ChangeNotifier
from cmk_trio.rpckit.storage import CHANGES, AlwaysLeader, Leadership, Migration, Row, SqlValue


class SqliteTransaction:
    """The statements of one write transaction on the file's only writer connection."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self.topics: set[str] = set()

    async def execute(self, sql: str, params: Sequence[SqlValue] = (), *, announce: str | None = CHANGES) -> int:
        cursor = await self._conn.execute(sql, params)
        if announce is not None:
            self.topics.add(announce)
        return cursor.rowcount

    async def execute_many(
        self, sql: str, rows: Sequence[Sequence[SqlValue]], *, announce: str | None = CHANGES
    ) -> None:
        await self._conn.executemany(sql, rows)  # one hop to the database thread for the whole batch
        if announce is not None:
            self.topics.add(announce)

    async def fetch_all(self, sql: str, params: Sequence[SqlValue] = ()) -> list[Row]:
        return list(await self._conn.execute_fetchall(sql, params))

    async def fetch_one(self, sql: str, params: Sequence[SqlValue] = ()) -> Row | None:
        for row in await self._conn.execute_fetchall(sql, params):
            return row
        return None


class SqliteDatabase:
    """An open SQLite file. Reads run concurrently; writes go through `transaction()`, which
    serialises them (SQLite allows one writer) and commits or rolls back as a unit."""

    engine = "sqlite"

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self.conn = conn
        self.reader = conn
        """The connection reads run on: the writer's until `open_reader`, then one of its own,
        which sees only what has committed (WAL gives each read a snapshot)."""
        self.path = path
        self.description = str(path)
        self._write_lock = asyncio.Lock()
        self._signals: dict[str, ChangeNotifier] = {}
        self.instance = uuid.uuid4().hex

    async def replica_alive(self, instance: str) -> bool:
        """A file has one process (the data-directory lock sees to it): any other is gone."""
        return instance == self.instance

    def signal(self, topic: str) -> ChangeNotifier:
        return self._signals.setdefault(topic, ChangeNotifier())

    def leadership(self, name: str) -> Leadership:
        return AlwaysLeader()

    @asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[None]:
        """Nothing to take: one process uses the file."""
        yield

    async def open_reader(self) -> None:
        """Give reads a connection of their own. On the writer's, a read queued between a write
        transaction's statements saw them before they committed, and a cache could keep what a
        rollback then undid (nothing tells a cache of a rollback)."""
        reader = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            reader.row_factory = aiosqlite.Row
            await reader.execute("PRAGMA query_only=ON")
            await reader.execute("PRAGMA busy_timeout=5000")
        except BaseException:
            await reader.close()
            raise
        self.reader = reader

    async def fetch_all(self, sql: str, params: Sequence[SqlValue] = ()) -> list[Row]:
        """All rows of a query (what has committed), in one hop to the database thread."""
        return list(await self.reader.execute_fetchall(sql, params))

    async def fetch_one(self, sql: str, params: Sequence[SqlValue] = ()) -> Row | None:
        """The first row of a query, or None."""
        for row in await self.reader.execute_fetchall(sql, params):
            return row
        return None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteTransaction]:
        """A write transaction: committed if the block returns, rolled back if it raises.

        Safe against a caller that goes away at any await (a deadline, a client that hung
        up): a statement handed to the database thread runs there whatever becomes of its
        caller, and the thread runs them in the order they were handed over. So BEGIN is
        inside the `try` (a rollback queued after a cancelled BEGIN undoes it), and a
        rollback or commit once queued cannot be overtaken by the next writer's BEGIN."""
        async with self._write_lock:
            tx = SqliteTransaction(self.conn)
            committing = False
            try:
                await self.conn.execute("BEGIN IMMEDIATE")
                yield tx
                committing = True
                await self.conn.commit()
            except BaseException:
                # After a failed or abandoned COMMIT too: whatever is still open is undone
                # (a commit that did land leaves nothing to roll back: "no transaction").
                with contextlib.suppress(sqlite3.Error, ValueError):
                    await self.conn.rollback()
                raise
            finally:
                # Once COMMIT was handed over, the change may land even if its caller is
                # gone: caches forget what they held, as after any commit. No await between
                # a completed commit and this: readers see both or neither.
                if committing:
                    for topic in tx.topics:
                        self.signal(topic).bump()

    async def schema_version(self) -> int:
        row = await self.fetch_one("SELECT MAX(version) FROM schema_migrations")
        return int(row[0] or 0) if row else 0

    async def close(self) -> None:
        if self.reader is not self.conn:
            await self.reader.close()
        await self.conn.close()


async def open_sqlite(path: Path, steps: Sequence[Migration]) -> SqliteDatabase:
    """Open (creating if needed) a SQLite file with WAL and apply pending migrations.

    The file and its WAL sidecars are made readable by the owner only.
    """
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


async def _prepare(conn: aiosqlite.Connection, path: Path, steps: Sequence[Migration]) -> SqliteDatabase:
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
    db = SqliteDatabase(conn, path)
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
    await db.open_reader()
    return db
