"""One PostgreSQL login role per service, so that replicas of different services that share a
database server cannot read or change each other's schemas (compose.replicas.yaml runs this):

    python -m cmk_trio.launcher.database_roles secrets ADMIN_DIR NAME=DIR ...
        Make the passwords that are missing: the administrator's (ADMIN_DIR/password, for the
        server's POSTGRES_PASSWORD_FILE), and one per service, kept in ADMIN_DIR/NAME.password
        and given to the service alone as DIR/pgpass (libpq's format, which asyncpg reads
        through PGPASSFILE). Every file is 0600.

    python -m cmk_trio.launcher.database_roles grant URL ADMIN_DIR NAME ...
        As the administrator (URL names the server, database and user; the password is
        ADMIN_DIR/password): make or update the role cmk_NAME with its password, allowed to
        connect to the database and to create its own schema in it, and take from PUBLIC the
        database's and the public schema's default privileges. Run again, it changes nothing
        but a password that was made anew.

Each service then owns the schema its migrations create (cmk_identity, ...); no other role
has any privilege on it."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import sys
from pathlib import Path
from urllib.parse import urlsplit

NAME = re.compile(r"[a-z][a-z0-9_]{0,30}")


def role_of(service: str) -> str:
    return f"cmk_{service}"


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def make_secrets(admin_dir: Path, services: dict[str, Path]) -> list[str]:
    """The passwords that were missing, made; the names of the files written."""
    written = []
    admin = admin_dir / "password"
    if not admin.exists():
        _write_private(admin, secrets.token_urlsafe(24) + "\n")
        written.append(str(admin))
    for service, directory in services.items():
        kept = admin_dir / f"{service}.password"
        if not kept.exists():
            _write_private(kept, secrets.token_urlsafe(24) + "\n")
            written.append(str(kept))
        password = kept.read_text().strip()
        pgpass = directory / "pgpass"
        line = f"*:*:*:{role_of(service)}:{password}\n"
        if not pgpass.exists() or pgpass.read_text() != line:
            pgpass.unlink(missing_ok=True)
            _write_private(pgpass, line)
            written.append(str(pgpass))
    return written


async def grant(url: str, admin_dir: Path, services: list[str]) -> None:
    import asyncpg

    database = urlsplit(url).path.lstrip("/")
    if not NAME.fullmatch(database):
        raise ValueError(f"unexpected database name {database!r}")
    conn = await asyncpg.connect(url, password=(admin_dir / "password").read_text().strip())
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('cmk database roles'))")
            await conn.execute(f'REVOKE ALL ON DATABASE "{database}" FROM PUBLIC')
            await conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
            for service in services:
                role = role_of(service)
                password = (admin_dir / f"{service}.password").read_text().strip()
                exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
                verb = "ALTER" if exists else "CREATE"
                # A role's password cannot be a bound parameter; it is made by us, URL-safe base64.
                if not re.fullmatch(r"[A-Za-z0-9_-]+", password):
                    raise ValueError(f"{service}'s password is not one this tool made")
                await conn.execute(f"{verb} ROLE \"{role}\" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
                                   f"PASSWORD '{password}'")  # fmt: skip
                await conn.execute(f'GRANT CONNECT, CREATE, TEMPORARY ON DATABASE "{database}" TO "{role}"')
    finally:
        await conn.close()


def _services(args: list[str]) -> dict[str, Path]:
    found = {}
    for arg in args:
        name, sep, directory = arg.partition("=")
        if not sep or not NAME.fullmatch(name):
            raise SystemExit(f"expected NAME=DIR, not {arg!r}")
        found[name] = Path(directory)
    return found


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "secrets":
        for path in make_secrets(Path(argv[1]), _services(argv[2:])):
            print(f"made {path}")
        return 0
    if len(argv) >= 4 and argv[0] == "grant":
        services = argv[3:]
        if not all(NAME.fullmatch(name) for name in services):
            raise SystemExit("a service name is lower-case letters, digits and _")
        asyncio.run(grant(argv[1], Path(argv[2]), services))
        print(f"roles ready: {', '.join(role_of(s) for s in services)}")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
