"""The audit log: one record per call, allowed or denied, chained with a keyed MAC and
sealed by signed checkpoints.

Each record carries HMAC(key, previous MAC || record): an edit breaks the chain at the
edited record, and a chain recomputed by someone without the key (which lives in the key
file, not the database) does not verify. A checkpoint (record count and head MAC, signed
with Ed25519, public key published) lets a verifier notice newest records cut off after the
checkpoint was saved. A record is written before the call answers; if it cannot be, the
call fails closed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cmk_trio.keyvault.crypto import CheckpointSigner, Sealer, audit_mac, macs_equal, verify_checkpoint_signature
from cmk_trio.keyvault.storage import KeyVaultStore
from cmk_trio.rpckit.clock import Clock
from cmk_trio.rpckit.errors import Unavailable
from cmk_trio.rpckit.events import ChangeNotifier
from cmk_trio.rpckit.reasons import Reason

log = logging.getLogger(__name__)

GENESIS = b"\x00" * 32
CHECKPOINT_KEY = "audit-checkpoint"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """What one call did. `result` is "allowed" or "denied"; `reason` the stable reason of
    a refusal (empty when allowed)."""

    time: datetime
    request_id: str
    caller_object_id: str
    tenant_id: str
    client_id: str
    resource_id: str
    operation: str
    vault_name: str
    key_name: str
    key_version: str
    result: str
    reason: str

    def canonical(self) -> dict[str, Any]:
        """The fields in declaration order (the columns' order), the time as ISO 8601.
        Built by hand: dataclasses.asdict deep-copies, and this runs for every call."""
        return {
            "time": self.time.isoformat(timespec="microseconds"),
            "request_id": self.request_id,
            "caller_object_id": self.caller_object_id,
            "tenant_id": self.tenant_id,
            "client_id": self.client_id,
            "resource_id": self.resource_id,
            "operation": self.operation,
            "vault_name": self.vault_name,
            "key_name": self.key_name,
            "key_version": self.key_version,
            "result": self.result,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class AuditRecord:
    sequence: int
    entry: AuditEntry
    mac: bytes


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement: the log held `count` records, the last with MAC `head`."""

    count: int
    head: bytes
    time: str
    signature: bytes

    def message(self) -> bytes:
        return f"cmk-audit-checkpoint\n{self.count}\n{self.head.hex()}\n{self.time}".encode()

    def to_json(self) -> str:
        return json.dumps(
            {
                "count": self.count,
                "head": self.head.hex(),
                "time": self.time,
                "signature": base64.b64encode(self.signature).decode(),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Checkpoint:
        data = json.loads(text)
        return cls(
            int(data["count"]), bytes.fromhex(data["head"]), str(data["time"]), base64.b64decode(data["signature"])
        )


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of checking the chain (and a checkpoint, if given)."""

    ok: bool
    records: int
    first_broken: int | None = None
    problem: str = ""


class AuditLog:
    """Appends, queries and verifies the audit log."""

    def __init__(self, store: KeyVaultStore, clock: Clock, mac_key: bytes, signer: CheckpointSigner) -> None:
        self._store = store
        self._clock = clock
        self._mac_key = mac_key
        self.signer = signer
        self.appended = ChangeNotifier()
        self._pending: list[tuple[AuditEntry, asyncio.Future[int]]] = []
        self._writer: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, store: KeyVaultStore, clock: Clock, mac_key: bytes, sealer: Sealer) -> AuditLog:
        """The log, with its checkpoint key loaded (or made on first start, sealed)."""
        row = await store.db.fetch_one("SELECT * FROM service_keys WHERE name = ?", (CHECKPOINT_KEY,))
        if row is None:
            signer = CheckpointSigner.generate()
            async with store.db.transaction() as tx:
                await tx.execute(
                    "INSERT INTO service_keys (name, public_key, sealed_private_key) VALUES (?, ?, ?)",
                    (CHECKPOINT_KEY, signer.public_raw(), sealer.seal(signer.raw(), CHECKPOINT_KEY)),
                )
        else:
            signer = CheckpointSigner.from_raw(sealer.open(bytes(row["sealed_private_key"]), CHECKPOINT_KEY))
        return cls(store, clock, mac_key, signer)

    @property
    def public_key(self) -> bytes:
        return self.signer.public_raw()

    async def append(self, entry: AuditEntry) -> int:
        """Write one record after the current head and return its sequence number, once it
        is committed; fails closed with AUDIT_UNAVAILABLE.

        Records of concurrent calls are committed together (group commit): whoever finds no
        write in progress starts one that takes every record waiting, so a busy vault pays
        one commit per batch, not per call, and every call still answers only after its
        own record is durable.
        """
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((entry, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain(), name="audit-group-commit")
        return await done

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                sequences = await self._write([entry for entry, _ in batch])
            except Exception as exc:
                log.error("cannot write the audit records", exc_info=exc)
                for _, done in batch:
                    if not done.done():
                        done.set_exception(
                            Unavailable(
                                Reason.AUDIT_UNAVAILABLE,
                                "the audit record could not be written, so the call was refused; retry",
                            )
                        )
                continue
            for (_, done), sequence in zip(batch, sequences, strict=True):
                if not done.done():  # a caller that gave up still has its record written
                    done.set_result(sequence)
            await self.appended.notify()

    async def _write(self, entries: list[AuditEntry]) -> list[int]:
        async with self._store.db.transaction() as tx:
            cursor = await tx.execute("SELECT sequence, mac FROM audit_log ORDER BY sequence DESC LIMIT 1")
            head = await cursor.fetchone()
            sequence = head[0] if head else 0
            previous = bytes(head[1]) if head else GENESIS
            rows = []
            for entry in entries:
                sequence += 1
                fields = entry.canonical()
                previous = audit_mac(self._mac_key, previous, {"sequence": sequence, **fields})
                rows.append((sequence, *fields.values(), previous))
            await tx.executemany(  # one hop to the database thread for the whole batch
                "INSERT INTO audit_log (sequence, time, request_id, caller_object_id, tenant_id, client_id,"
                " resource_id, operation, vault_name, key_name, key_version, result, reason, mac)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        return [row[0] for row in rows]

    async def query(
        self,
        *,
        vault_name: str | None = None,
        key_name: str | None = None,
        caller_object_id: str | None = None,
        result: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> list[AuditRecord]:
        sql = "SELECT * FROM audit_log WHERE sequence > ?"
        params: list[object] = [after]
        for column, value in (
            ("vault_name", vault_name),
            ("key_name", key_name),
            ("caller_object_id", caller_object_id),
            ("result", result),
        ):
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(value)
        if since is not None:
            sql += " AND time >= ?"
            params.append(since.isoformat(timespec="microseconds"))
        if until is not None:
            sql += " AND time < ?"
            params.append(until.isoformat(timespec="microseconds"))
        rows = await self._store.db.fetch_all(sql + " ORDER BY sequence LIMIT ?", (*params, limit))
        return [_record(r) for r in rows]

    async def count(self) -> int:
        row = await self._store.db.fetch_one("SELECT COALESCE(MAX(sequence), 0) FROM audit_log")
        return int(row[0]) if row else 0

    async def checkpoint(self) -> Checkpoint:
        """Sign the current head, store the checkpoint, and return it (to be saved elsewhere)."""
        row = await self._store.db.fetch_one("SELECT sequence, mac FROM audit_log ORDER BY sequence DESC LIMIT 1")
        count, head = (int(row[0]), bytes(row[1])) if row else (0, GENESIS)
        when = self._clock.now().isoformat(timespec="microseconds")
        unsigned = Checkpoint(count, head, when, b"")
        signed = Checkpoint(count, head, when, self.signer.sign(unsigned.message()))
        async with self._store.db.transaction() as tx:
            await tx.execute(
                "INSERT OR REPLACE INTO audit_checkpoints (count, head_mac, time, signature) VALUES (?, ?, ?, ?)",
                (signed.count, signed.head, signed.time, signed.signature),
            )
        return signed

    async def latest_checkpoint(self) -> Checkpoint | None:
        row = await self._store.db.fetch_one("SELECT * FROM audit_checkpoints ORDER BY count DESC LIMIT 1")
        if row is None:
            return None
        return Checkpoint(int(row["count"]), bytes(row["head_mac"]), row["time"], bytes(row["signature"]))

    async def verify(self, checkpoints: Sequence[Checkpoint] = ()) -> Verification:
        """Walk the whole chain, then hold it against the checkpoints given (a saved copy is
        what catches cut-off records, since whoever cuts records can cut the stored
        checkpoint too), or else against the latest stored checkpoint."""
        latest = await self.latest_checkpoint()
        to_check = list(checkpoints) or ([latest] if latest is not None else [])
        wanted = {c.count for c in to_check}
        macs: dict[int, bytes] = {}
        previous, count = GENESIS, 0
        while rows := await self._store.db.fetch_all(
            "SELECT * FROM audit_log WHERE sequence > ? ORDER BY sequence LIMIT 1000", (count,)
        ):
            for row in rows:
                record = _record(row)
                if record.sequence != count + 1:
                    return Verification(False, count, count + 1, f"record {count + 1} is missing")
                expected = audit_mac(self._mac_key, previous, {"sequence": record.sequence, **record.entry.canonical()})
                if not macs_equal(expected, record.mac):
                    return Verification(False, count, record.sequence, f"record {record.sequence} was altered")
                previous, count = record.mac, record.sequence
                if count in wanted:
                    macs[count] = record.mac
        for checkpoint in to_check:
            if not verify_checkpoint_signature(self.public_key, checkpoint.message(), checkpoint.signature):
                return Verification(False, count, None, "the checkpoint's signature does not verify")
            if checkpoint.count > count:
                return Verification(
                    False,
                    count,
                    count + 1,
                    f"records {count + 1}-{checkpoint.count} named by the checkpoint are missing: "
                    "the newest records were cut off",
                )
            if checkpoint.count and not macs_equal(macs[checkpoint.count], checkpoint.head):
                return Verification(
                    False, count, checkpoint.count, f"record {checkpoint.count} differs from the checkpoint"
                )
        return Verification(True, count)


def _record(r: Any) -> AuditRecord:
    entry = AuditEntry(
        time=datetime.fromisoformat(r["time"]),
        request_id=r["request_id"],
        caller_object_id=r["caller_object_id"],
        tenant_id=r["tenant_id"],
        client_id=r["client_id"],
        resource_id=r["resource_id"],
        operation=r["operation"],
        vault_name=r["vault_name"],
        key_name=r["key_name"],
        key_version=r["key_version"],
        result=r["result"],
        reason=r["reason"],
    )
    return AuditRecord(int(r["sequence"]), entry, bytes(r["mac"]))
