"""The audit log's chain and checkpoints, against a real SQLite file edited behind its back."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from cmk_trio.keyvault.audit import AuditLog
from cmk_trio.keyvault.crypto import Sealer, VaultMasterKey, audit_mac
from cmk_trio.keyvault.model import AuditEntry, Checkpoint
from cmk_trio.keyvault.storage import KeyVaultStore, open_store
from cmk_trio.rpckit.errors import Unavailable
from cmk_trio.rpckit.reasons import Reason

MASTER = VaultMasterKey(b"\x05" * 32)


@pytest.fixture
async def store(tmp_path) -> AsyncIterator[KeyVaultStore]:
    opened = await open_store(tmp_path / "kv.db")
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def log(store, clock):
    return await AuditLog.open(store, clock, MASTER.audit_mac_key, Sealer(MASTER))


def entry(clock, n: int, result: str = "allowed") -> AuditEntry:
    return AuditEntry(
        time=clock.now(), request_id=f"req-{n}", caller_object_id="oid", tenant_id="tid", client_id="cid",
        resource_id="", operation="UnwrapKey", vault_name="v1", key_name="k1", key_version="a" * 32,
        result=result, reason="" if result == "allowed" else "FORBIDDEN_BY_POLICY",
    )  # fmt: skip


async def fill(log: AuditLog, clock, n: int) -> None:
    for i in range(1, n + 1):
        clock.advance(1)
        await log.append(entry(clock, i, "allowed" if i % 2 else "denied"))


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "kv.db"


async def test_an_intact_log_verifies_and_can_be_queried(log, clock):
    await fill(log, clock, 6)
    assert (await log.verify()).ok
    denied = await log.query(result="denied")
    assert [r.sequence for r in denied] == [2, 4, 6]
    assert [r.sequence for r in await log.query(after=4)] == [5, 6]


async def test_editing_one_record_breaks_verification_at_that_record(log, clock, db_path):
    await fill(log, clock, 5)
    with sqlite3.connect(db_path) as db:
        db.execute("UPDATE audit_log SET result = 'allowed', reason = '' WHERE sequence = 4")
    result = await log.verify()
    assert (result.ok, result.first_broken) == (False, 4)


async def test_a_chain_recomputed_without_the_key_is_detected(log, clock, db_path):
    await fill(log, clock, 4)
    forged_key = b"\x99" * 32
    with sqlite3.connect(db_path) as db:
        db.row_factory = sqlite3.Row
        rows = db.execute("SELECT * FROM audit_log ORDER BY sequence").fetchall()
        previous = b"\x00" * 32
        for row in rows:
            data = {k: row[k] for k in row.keys() if k != "mac"}
            data["result"] = "allowed"
            mac = audit_mac(forged_key, previous, data)
            db.execute("UPDATE audit_log SET result = 'allowed', mac = ? WHERE sequence = ?", (mac, row["sequence"]))
            previous = mac
    result = await log.verify()
    assert (result.ok, result.first_broken) == (False, 1)


async def test_cutting_off_the_newest_records_is_caught_by_a_saved_checkpoint(log, clock, db_path):
    await fill(log, clock, 5)
    saved = Checkpoint.from_json((await log.checkpoint()).to_json())
    await fill(log, clock, 2)
    assert (await log.verify([saved])).ok
    with sqlite3.connect(db_path) as db:
        db.execute("DELETE FROM audit_log WHERE sequence >= 4")
        db.execute("DELETE FROM audit_checkpoints")
    assert (await log.verify()).ok  # without a saved checkpoint, a clean cut looks whole
    result = await log.verify([saved])
    assert not result.ok and result.first_broken == 4 and "cut off" in result.problem


async def test_a_forged_checkpoint_is_refused(log, clock):
    await fill(log, clock, 3)
    real = await log.checkpoint()
    forged = replace(real, count=2)
    result = await log.verify([forged])
    assert not result.ok and "signature" in result.problem


async def test_the_stored_checkpoint_is_used_when_none_is_given(log, clock, db_path):
    await fill(log, clock, 3)
    await log.checkpoint()
    with sqlite3.connect(db_path) as db:
        db.execute("DELETE FROM audit_log WHERE sequence = 3")
    assert not (await log.verify()).ok


async def test_a_record_that_cannot_be_written_fails_closed(log, clock, store):
    await store.close()
    with pytest.raises(Unavailable) as caught:
        await log.append(entry(clock, 1))
    assert caught.value.reason is Reason.AUDIT_UNAVAILABLE


async def test_the_checkpoint_key_survives_a_restart(tmp_path, clock):
    store = await open_store(tmp_path / "kv.db")
    first = await AuditLog.open(store, clock, MASTER.audit_mac_key, Sealer(MASTER))
    checkpoint = await first.checkpoint()
    again = await AuditLog.open(store, clock, MASTER.audit_mac_key, Sealer(MASTER))
    assert again.public_key == first.public_key
    assert (await again.verify([checkpoint])).ok
    await store.close()


async def test_concurrent_records_are_committed_together_and_chain_in_order(log, clock):
    import asyncio

    sequences = await asyncio.gather(*(log.append(entry(clock, i)) for i in range(1, 51)))
    assert sorted(sequences) == list(range(1, 51))
    assert (await log.verify()).ok
    assert [r.entry.request_id for r in await log.query(limit=100)] == [f"req-{i}" for i in range(1, 51)]


def test_the_canonical_form_covers_every_field_in_column_order(clock):
    from dataclasses import fields, replace

    one = replace(entry(clock, 1, "denied"), vault_id="a-vault-incarnation", count=7)
    canonical = one.canonical()
    assert list(canonical) == [f.name for f in fields(AuditEntry)]
    assert canonical["time"] == one.time.isoformat(timespec="microseconds")
    assert [canonical[f.name] for f in fields(AuditEntry) if f.name != "time"] == [
        getattr(one, f.name) for f in fields(AuditEntry) if f.name != "time"
    ]
    # Records written before vaults had ids have none, and their MAC covers no such field.
    assert "vault_id" not in replace(one, vault_id="").canonical()
    assert "count" not in replace(one, count=1).canonical()
