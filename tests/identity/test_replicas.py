"""Identity replicas on one PostgreSQL database: a signing key rotated or revoked through one
is used or refused by the other at once, and failed sign-ins are counted together, so
guesses spread over the replicas are paused as if they had all come to one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cmk_trio.identity.crypto import SecretHasher
from cmk_trio.identity.server import IdentityServer, build_server
from cmk_trio.identity.sign_ins import SecretChecks, StoredLedger
from cmk_trio.identity.storage import open_store
from cmk_trio.rpckit.errors import ResourceExhausted
from cmk_trio.rpckit.reasons import Reason
from tests.conftest import identity_config
from tests.waiting import eventually


@pytest.fixture
async def replicas(tmp_path: Path, postgres_url: str, clock) -> AsyncIterator[list[IdentityServer]]:
    # One data directory (the master key), one database: as `cmk up --replicas 2` runs them.
    config = identity_config(tmp_path / "identity", database_url=postgres_url)
    started = [await build_server(config, clock=clock) for _ in range(2)]
    try:
        yield started
    finally:
        for server in started:
            await server.stop(grace=0)


async def test_a_key_rotated_or_revoked_through_one_replica_is_used_or_refused_by_the_other(replicas):
    a, b = replicas
    old = (await b.keys.signer()).kid
    new = await a.keys.rotate()

    async def b_signs_with_the_new_key() -> bool | None:
        return True if (await b.keys.signer()).kid == new.kid else None

    await eventually(b_signs_with_the_new_key, "replica B signing with the key A made active")
    withdrawn: list[str] = []
    b.keys.on_revoked.append(lambda kid: _record(withdrawn, kid))
    await a.keys.revoke(old)

    async def b_withdrew_it() -> bool | None:
        return True if old in withdrawn else None

    await eventually(b_withdrew_it, "replica B withdrawing the key A revoked")


async def _record(into: list[str], kid: str) -> None:
    into.append(kid)


async def test_failed_sign_ins_are_counted_across_replicas(postgres_url: str, clock):
    stores = [await open_store(postgres_url) for _ in range(2)]
    checks = []
    try:
        for store in stores:
            made = SecretChecks(SecretHasher(cost=10), clock, free_failures=4)
            made.ledger = StoredLedger(store, clock, made.window)
            checks.append(made)
        client = ("tenant", "client")
        for n in range(4):  # the free attempts, spread over both replicas
            await checks[n % 2].admit(client)
        for each in checks:  # either replica now pauses the client
            with pytest.raises(ResourceExhausted) as paused:
                await each.admit(client)
            assert paused.value.reason is Reason.SIGN_IN_THROTTLED
        await checks[0].succeeded(client)
        await checks[1].admit(client)  # a success anywhere clears the count everywhere
    finally:
        for made in checks:
            made.close()
        for store in stores:
            await store.close()
