"""Key vault replicas on one PostgreSQL database, at the store: one audit chain whatever
replica appends, and an event log no follower can skip in, even when transactions commit
out of order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from cmk_trio.keyvault.audit import AuditLog
from cmk_trio.keyvault.crypto import Sealer, VaultMasterKey
from cmk_trio.keyvault.model import EventType
from cmk_trio.keyvault.storage import KeyVaultStore, open_store
from cmk_trio.rpckit.storage.postgres import parse_database_url
from tests.keyvault.test_audit import entry

MASTER = VaultMasterKey(b"\x05" * 32)


@pytest.fixture
async def replicas(postgres_url: str) -> AsyncIterator[list[KeyVaultStore]]:
    opened = [await open_store(postgres_url) for _ in range(3)]
    try:
        yield opened
    finally:
        for store in opened:
            await store.close()


async def test_appends_through_every_replica_form_one_chain(replicas, clock):
    logs = [await AuditLog.open(store, clock, MASTER.audit_mac_key, Sealer(MASTER)) for store in replicas]
    assert len({log.public_key for log in logs}) == 1  # one checkpoint key, made by the first

    async def appends(log: AuditLog, first: int) -> list[int]:
        return [await log.append(entry(clock, first + i)) for i in range(30)]

    sequences = await asyncio.gather(*(appends(log, 100 * n) for n, log in enumerate(logs)))
    assert sorted(s for each in sequences for s in each) == list(range(1, 91))
    checkpoint = await logs[1].checkpoint()
    for log in logs:  # any replica verifies the whole chain, and the one checkpoint
        verified = await log.verify([checkpoint])
        assert verified.ok and verified.records == 90


async def test_a_follower_never_reads_past_an_event_not_yet_committed(replicas, postgres_url: str, clock):
    """Two writers that do not take turns (here: raw connections) commit 2 before 1; a reader
    in between must see neither, or it would skip 1 for good."""
    store = replicas[0]
    async with store.unit_of_work() as uow:
        await uow.append_event(EventType.VAULT_RECOVERED, clock.now(), vault_name="v0")
    target = parse_database_url(postgres_url, "keyvault")
    first = await asyncpg.connect(target.dsn, server_settings={"search_path": target.schema})
    second = await asyncpg.connect(target.dsn, server_settings={"search_path": target.schema})
    try:
        insert = "INSERT INTO events (sequence, type, time, vault_name) VALUES ($1, $2, $3, $4)"
        when = clock.now().isoformat()
        slow = first.transaction()
        await slow.start()
        await first.execute(insert, 2, int(EventType.VAULT_RECOVERED), when, "v1")
        async with second.transaction():
            await second.execute(insert, 3, int(EventType.VAULT_RECOVERED), when, "v2")
        assert [e.sequence for e in await replicas[1].events_after(1)] == []  # 3 is there, 2 is not yet
        await slow.commit()
        assert [e.sequence for e in await replicas[1].events_after(1)] == [2, 3]
    finally:
        await first.close()
        await second.close()


async def test_events_appended_through_every_replica_are_numbered_without_gaps(replicas, clock):
    async def append(store: KeyVaultStore, n: int) -> None:
        async with store.unit_of_work() as uow:
            await uow.append_event(EventType.VAULT_RECOVERED, clock.now(), vault_name=f"v{n}")

    await asyncio.gather(*(append(replicas[n % 3], n) for n in range(60)))
    events = await replicas[2].events_after(0)
    assert [e.sequence for e in events] == list(range(1, 61))
    assert sorted(e.vault_name for e in events) == sorted(f"v{n}" for n in range(60))
