"""A service's schema written once for both engines, and the migrations each engine runs.

A service lists its schema's changes once, oldest first. A statement is written once, in SQL
that both engines take, with the few words they spell differently as `{placeholders}` (see
`WORDS`); what only one engine runs is marked `sqlite_only(...)` or `postgres_only(...)` where
it stands, as a statement or as a line of a table. `Schema.migrations(engine)` gives what
that engine runs: the `Migration`s `open_database` applies.

Shipped migrations never change (tests/storage/test_shipped_migrations.py holds each one's SQL
on each engine): a change to a schema is a new `Change` at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cmk_trio.rpckit.storage import Migration, check_migrations

Engine = Literal["sqlite", "postgres"]
ENGINES: tuple[Engine, ...] = ("sqlite", "postgres")

WORDS: dict[str, tuple[str, str]] = {
    # word: (SQLite, PostgreSQL)
    "bytes": ("BLOB", "BYTEA"),
    # A number that may pass 2**31 (a sequence number, a version, a generation): SQLite's
    # INTEGER holds 64 bits, PostgreSQL's only 32.
    "int64": ("INTEGER", "BIGINT"),
    # A key the database numbers itself and never reuses, even after the newest row is deleted.
    "auto_key": ("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"),
    # Text compared without case: SQLite's own collation; on PostgreSQL the ICU collation of
    # that name that the schema makes first (`CREATE COLLATION nocase ...`).
    "nocase": ("NOCASE", "nocase"),
}
"""The words the engines spell differently, as a statement names them: `{bytes}`, `{int64}`..."""

TABLE_INDENT = " " * 16
"""Before each line of a table: the indentation the tables had when they were written out as
whole statements, kept so that every shipped statement is still what it was, to the space
(SQLite keeps the text of each CREATE TABLE)."""


@dataclass(frozen=True, slots=True)
class Only:
    """SQL that one engine runs and the other does not: a statement, or a line of a table."""

    engine: Engine
    sql: str


def sqlite_only(sql: str) -> Only:
    return Only("sqlite", sql)


def postgres_only(sql: str) -> Only:
    return Only("postgres", sql)


@dataclass(frozen=True, slots=True)
class Table:
    """A CREATE TABLE statement, each column and constraint a line (some for one engine only)."""

    name: str
    lines: tuple[str | Only, ...]


def table(name: str, *lines: str | Only) -> Table:
    """`CREATE TABLE name (line, line, ...)`, on each engine with the lines that are for it."""
    return Table(name, lines)


Statement = str | Only | Table


@dataclass(frozen=True, slots=True)
class Change:
    """One change of a schema: SQLite's migration `version`, and part of PostgreSQL's (see `Schema`)."""

    version: int
    description: str
    statements: tuple[Statement, ...]

    def on(self, engine: Engine) -> tuple[str, ...]:
        """The statements `engine` runs for this change, in its own words."""
        return tuple(sql for s in self.statements if (sql := _render(s, engine)) is not None)


@dataclass(frozen=True, slots=True)
class Baseline:
    """PostgreSQL's version 1: SQLite's schema as its version `covers` has it, made at once."""

    covers: int
    description: str


@dataclass(frozen=True, slots=True)
class Schema:
    """A service's schema on both engines: its changes, oldest first.

    SQLite runs each change as a migration of its own: change n is its version n. PostgreSQL
    came to a service when SQLite's schema was at some version (`postgres_baseline.covers`):
    its version 1 runs, as one migration, what changes 1 to `covers` run on PostgreSQL, and each
    later change n is its version n - covers + 1. What PostgreSQL's first tables hold from the
    start while SQLite gains it in a later change (a column, an index) is written once, as a
    constant, marked `postgres_only` in the first change and `sqlite_only` in the later one."""

    postgres_baseline: Baseline
    changes: tuple[Change, ...]

    def __post_init__(self) -> None:
        if not 1 <= self.postgres_baseline.covers <= len(self.changes):
            raise ValueError("PostgreSQL's first version must cover one change or more of those there are")
        for engine in ENGINES:
            check_migrations(self.migrations(engine))  # numbered 1, 2, ... and every word known

    def migrations(self, engine: Engine) -> tuple[Migration, ...]:
        """The migrations `engine` runs, oldest first."""
        steps = [Migration(c.version, c.description, c.on(engine)) for c in self.changes]
        if engine == "sqlite":
            return tuple(steps)
        covers = self.postgres_baseline.covers
        first = Migration(1, self.postgres_baseline.description, tuple(s for m in steps[:covers] for s in m.statements))
        return (first, *(Migration(m.version - covers + 1, m.description, m.statements) for m in steps[covers:]))


def _render(statement: Statement, engine: Engine) -> str | None:
    """The statement as `engine` runs it; None if it is not for `engine`."""
    if isinstance(statement, Only):
        return _words(statement.sql, engine) if statement.engine == engine else None
    if isinstance(statement, Table):
        lines = [sql for line in statement.lines if (sql := _render(line, engine)) is not None]
        body = ",\n".join(TABLE_INDENT + line for line in lines)
        return f"CREATE TABLE {statement.name} (\n{body})"
    return _words(statement, engine)


def _words(sql: str, engine: Engine) -> str:
    words = {word: spellings[ENGINES.index(engine)] for word, spellings in WORDS.items()}
    try:
        return sql.format_map(words)
    except KeyError as exc:
        raise ValueError(f"{sql!r} names {exc.args[0]!r}, not one of the words in WORDS") from None
