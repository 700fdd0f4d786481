"""A schema written once: each engine's words and lines, and PostgreSQL's first version made of
SQLite's first changes (the services' shipped schemas are held in tests/storage)."""

from __future__ import annotations

import pytest

from cmk_trio.rpckit.storage import Migration, open_database
from cmk_trio.rpckit.storage.schema import Baseline, Change, Schema, postgres_only, sqlite_only, table

LABEL = "label TEXT NOT NULL DEFAULT ''"

THINGS = Schema(
    postgres_baseline=Baseline(2, "things with labels (as SQLite's version 2)"),
    changes=(
        Change(
            1,
            "things",
            (
                table("things", "id {auto_key}", "body {bytes} NOT NULL", "size {int64}", postgres_only(LABEL)),
                "CREATE INDEX things_by_size ON things(size)",
            ),
        ),
        Change(2, "labels", (sqlite_only(f"ALTER TABLE things ADD COLUMN {LABEL}"),)),
        Change(3, "owners", ("ALTER TABLE things ADD COLUMN owner TEXT NOT NULL DEFAULT ''",)),
    ),
)


def test_each_engine_runs_the_statements_in_its_own_words():
    assert THINGS.migrations("sqlite") == (
        Migration(
            1,
            "things",
            (
                "CREATE TABLE things (\n"
                "                id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
                "                body BLOB NOT NULL,\n"
                "                size INTEGER)",
                "CREATE INDEX things_by_size ON things(size)",
            ),
        ),
        Migration(2, "labels", ("ALTER TABLE things ADD COLUMN label TEXT NOT NULL DEFAULT ''",)),
        Migration(3, "owners", ("ALTER TABLE things ADD COLUMN owner TEXT NOT NULL DEFAULT ''",)),
    )


def test_postgres_first_version_makes_at_once_what_sqlite_reached_by_the_baseline():
    assert THINGS.migrations("postgres") == (
        Migration(
            1,
            "things with labels (as SQLite's version 2)",
            (
                "CREATE TABLE things (\n"
                "                id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n"
                "                body BYTEA NOT NULL,\n"
                "                size BIGINT,\n"
                "                label TEXT NOT NULL DEFAULT '')",
                "CREATE INDEX things_by_size ON things(size)",
            ),
        ),
        # A change after the baseline is a version of PostgreSQL's own, numbered on from 1.
        Migration(2, "owners", ("ALTER TABLE things ADD COLUMN owner TEXT NOT NULL DEFAULT ''",)),
    )


def test_a_word_neither_engine_knows_is_refused_when_the_schema_is_written():
    with pytest.raises(ValueError, match="'blob'"):
        Schema(postgres_baseline=Baseline(1, "t"), changes=(Change(1, "t", ("CREATE TABLE t (b {blob})",)),))


@pytest.mark.parametrize("covers", [0, 2])
def test_the_baseline_covers_changes_that_exist(covers: int):
    with pytest.raises(ValueError, match="first version"):
        Schema(postgres_baseline=Baseline(covers, "t"), changes=(Change(1, "t", ("CREATE TABLE t (a TEXT)",)),))


def test_changes_are_numbered_without_gaps():
    with pytest.raises(ValueError, match="without gaps"):
        Schema(postgres_baseline=Baseline(1, "t"), changes=(Change(2, "t", ("CREATE TABLE t (a TEXT)",)),))


async def test_a_database_made_before_a_change_takes_it_on_either_engine(store_location):
    old = await open_database(
        store_location,
        service="things",
        sqlite=THINGS.migrations("sqlite")[:2],
        postgres=THINGS.migrations("postgres")[:1],
    )
    async with old.transaction() as tx:
        await tx.execute("INSERT INTO things (body, size, label) VALUES (?, ?, 'a')", (b"\x00", 2**40))
    await old.close()
    db = await open_database(
        store_location, service="things", sqlite=THINGS.migrations("sqlite"), postgres=THINGS.migrations("postgres")
    )
    try:
        rows = await db.fetch_all("SELECT id, body, size, label, owner FROM things")
        assert [tuple(r) for r in rows] == [(1, b"\x00", 2**40, "a", "")]
    finally:
        await db.close()
