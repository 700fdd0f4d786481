"""Shipped migrations never change: the SQL each one runs on each engine is frozen in a golden
file, tests/storage/golden/<service>/<engine>-<version>.sql, and compared here.

A database in the field that has run a migration never runs it again, so a migration edited
after it shipped would leave the databases made before the edit unlike those made after it.
Change a schema by adding a migration, never by editing one:

1. Add a `Change` at the end of the service's storage/schema.py (its SQL written once, as
   rpckit/storage/schema.py says; PostgreSQL may number it lower than SQLite, see `Schema`).
2. Run `.venv/bin/python -m pytest -q -p no:cacheprovider tests/storage --freeze-new-migrations`:
   it writes the golden file of each migration, on each engine, that has none yet, and never
   rewrites one that exists (a changed shipped migration still fails).
3. Read the new files (they are exactly what each engine will run) and commit them with the
   migration.

A golden file whose migration is gone fails too: a shipped migration is never taken back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cmk_trio.identity.storage.sql import SqlIdentityStore
from cmk_trio.keyvault.storage.sql import SqlKeyVaultStore
from cmk_trio.rpckit.storage import Migration, SqlStore, check_migrations
from cmk_trio.rpckit.storage.schema import ENGINES, Engine
from cmk_trio.speech.storage.sql import SqlSpeechStore

GOLDEN = Path(__file__).resolve().parent / "golden"
STORES: dict[str, type[SqlStore[Any]]] = {
    "identity": SqlIdentityStore,
    "keyvault": SqlKeyVaultStore,
    "speech": SqlSpeechStore,
}


def shipped(service: str, engine: Engine) -> list[Migration]:
    """The migrations the service's store runs on `engine`, oldest first."""
    return check_migrations(STORES[service].schema.migrations(engine))


def golden_path(service: str, engine: str, version: int) -> Path:
    return GOLDEN / service / f"{engine}-{version:03d}.sql"


def golden_text(service: str, engine: str, migration: Migration) -> str:
    """What the golden file of `migration` holds: its description (recorded in the database's
    schema_migrations) and its statements, each exactly as the engine is given it."""
    for statement in migration.statements:
        # The file ends each statement with ";": one inside would make its text ambiguous.
        assert ";" not in statement, f"{service} {engine} version {migration.version}: a statement holds ';'"
    head = (
        f"-- {service} on {engine}, version {migration.version}: {migration.description}\n"
        "-- A shipped migration, frozen by tests/storage/test_shipped_migrations.py: never edit it.\n"
    )
    return head + "".join(f"\n{statement};\n" for statement in migration.statements)


def freeze(path: Path, text: str) -> None:
    """Write the golden file of a new migration; refused (FileExistsError) if it has one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("x", encoding="utf-8", newline="\n") as file:
        file.write(text)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("service", sorted(STORES))
def test_shipped_migrations_run_the_sql_they_shipped_with(service: str, engine: Engine, request: pytest.FixtureRequest):
    migrations = shipped(service, engine)
    known = {golden_path(service, engine, m.version) for m in migrations}
    gone = sorted(p.name for p in (GOLDEN / service).glob(f"{engine}-*.sql") if p not in known)
    assert gone == [], f"{service} on {engine}: shipped migrations are gone (never take one back): {gone}"
    changed: list[str] = []
    unfrozen: list[str] = []
    for migration in migrations:
        path = golden_path(service, engine, migration.version)
        text = golden_text(service, engine, migration)
        if not path.exists():
            if request.config.getoption("--freeze-new-migrations"):
                freeze(path, text)
            else:
                unfrozen.append(str(path.relative_to(GOLDEN.parent)))
        elif path.read_text(encoding="utf-8") != text:
            changed.append(str(path.relative_to(GOLDEN.parent)))
    assert changed == [], (
        f"shipped migrations changed: {changed}. Databases that ran them will not run them again:"
        " put the change in a new migration and leave these as they were"
    )
    assert unfrozen == [], (
        f"migrations without a golden file: {unfrozen}. If they are new, write their files with"
        " `pytest tests/storage --freeze-new-migrations`, read them and commit them"
    )


def test_freezing_never_rewrites_a_golden_file(tmp_path: Path):
    path = tmp_path / "identity" / "sqlite-001.sql"
    freeze(path, "-- first\n")
    with pytest.raises(FileExistsError):
        freeze(path, "-- second\n")
    assert path.read_text() == "-- first\n"
