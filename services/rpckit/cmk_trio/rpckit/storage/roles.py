"""A PostgreSQL login role and a database of its own per service, so that services sharing a
database server cannot read or change each other's tables, nor take each other's advisory
locks or notification channels (both belong to a database). compose.replicas.yaml runs it:

    python -m cmk_trio.rpckit.storage.roles secrets ADMIN_DIR NAME=DIR ...
        Make the passwords that are missing: the administrator's (ADMIN_DIR/password, for the
        server's POSTGRES_PASSWORD_FILE), and one per service, kept in ADMIN_DIR/NAME.password
        and given to the service alone as DIR/pgpass (libpq's format, which asyncpg reads
        through PGPASSFILE). Every file is 0600, written whole or not at all.

    python -m cmk_trio.rpckit.storage.roles grant URL ADMIN_DIR NAME ...
        As the administrator (URL names the server and user; the password is
        ADMIN_DIR/password): make or update the role cmk_NAME (login, and nothing else: not a
        superuser, no replication, no row-security bypass, in no other role), and the database
        cmk_NAME, owned by it, that no other role may connect to. The password goes to the
        server as a SCRAM-SHA-256 verifier, never as text a log could keep. Run again, it
        changes nothing but a password that was made anew.

A service's URL is then postgresql://cmk_NAME@HOST:PORT/cmk_NAME."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import re
import secrets
import sys
from pathlib import Path

import asyncpg

from cmk_trio.rpckit.datadir import StartupError
from cmk_trio.rpckit.keyfiles import read_private_text, write_private_file

NAME = re.compile(r"[a-z][a-z0-9_]{0,30}")
SCRAM_ITERATIONS = 4096


class RolesError(Exception):
    """Input this tool refuses, before it has changed anything."""


def role_of(service: str) -> str:
    if not NAME.fullmatch(service):
        raise RolesError(f"a service name is a lower-case letter, then letters, digits or _: not {service!r}")
    return f"cmk_{service}"


def _write_private(path: Path, text: str) -> None:
    """`path` holds `text` with mode 0600, replaced whole (never a half-written secret), by
    the one writer of files of secrets (rpckit.keyfiles)."""
    write_private_file(path, text, replace=True)


def make_secrets(admin_dir: Path, services: dict[str, Path]) -> list[str]:
    """The passwords that were missing, made; the names of the files written."""
    for directory in (admin_dir, *services.values()):
        if not directory.is_dir():
            raise RolesError(f"{directory} is not a directory")
    for service in services:
        role_of(service)
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
        line = f"*:*:*:{role_of(service)}:{read_private_text(kept).strip()}\n"
        pgpass = directory / "pgpass"
        if not pgpass.exists() or read_private_text(pgpass) != line:
            _write_private(pgpass, line)
            written.append(str(pgpass))
    return written


def scram_verifier(password: str, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802, RFC 7677), so
    that the password itself never reaches the server, its logs or its statistics."""
    salt = os.urandom(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


async def grant(url: str, admin_dir: Path, services: list[str], admin_password: str | None = None) -> None:
    roles = {service: role_of(service) for service in services}
    passwords = {}
    for service in services:
        kept = admin_dir / f"{service}.password"
        if not kept.exists():
            raise RolesError(f"{kept} is missing: make the secrets first")
        passwords[service] = read_private_text(kept).strip()
    if admin_password is None:
        admin_password = read_private_text(admin_dir / "password").strip()
    conn = await asyncpg.connect(url, password=admin_password)
    try:
        # CREATE DATABASE cannot run in a transaction: a session lock keeps two runs apart.
        await conn.execute("SELECT pg_advisory_lock(hashtext('cmk database roles'))")
        for service, role in roles.items():
            exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
            verb = "ALTER" if exists else "CREATE"
            # A verifier is base64 and '$', ':' only: safe in a literal (it cannot be a parameter).
            verifier = scram_verifier(passwords[service])
            await conn.execute(
                f'{verb} ROLE "{role}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS '
                f"INHERIT CONNECTION LIMIT -1 VALID UNTIL 'infinity' PASSWORD '{verifier}'"
            )
            for member_of in await conn.fetch(
                "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
                "JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = $1", role,
            ):  # fmt: skip
                await conn.execute(f'REVOKE "{member_of["rolname"]}" FROM "{role}"')
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", role):
                await conn.execute(f'CREATE DATABASE "{role}" OWNER "{role}"')
            await conn.execute(f'ALTER DATABASE "{role}" OWNER TO "{role}"')
            await conn.execute(f'REVOKE ALL ON DATABASE "{role}" FROM PUBLIC')
    finally:
        await conn.close()


def _services(args: list[str]) -> dict[str, Path]:
    found = {}
    for arg in args:
        name, sep, directory = arg.partition("=")
        if not sep or not directory:
            raise RolesError(f"expected NAME=DIR, not {arg!r}")
        found[name] = Path(directory)
    return found


def main(argv: list[str]) -> int:
    try:
        if len(argv) >= 3 and argv[0] == "secrets":
            for path in make_secrets(Path(argv[1]), _services(argv[2:])):
                print(f"made {path}")
            return 0
        if len(argv) >= 4 and argv[0] == "grant":
            asyncio.run(grant(argv[1], Path(argv[2]), argv[3:]))
            print(f"roles and databases ready: {', '.join(role_of(s) for s in argv[3:])}")
            return 0
    except (RolesError, OSError, StartupError, asyncpg.PostgresError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
