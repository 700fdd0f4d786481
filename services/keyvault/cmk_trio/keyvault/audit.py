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
import contextvars
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cmk_trio.keyvault.crypto import CheckpointSigner, Sealer, audit_mac, macs_equal, verify_checkpoint_signature
from cmk_trio.keyvault.model import AuditEntry, AuditRecord, Checkpoint, Vault
from cmk_trio.keyvault.storage import KeyVaultStore, KeyVaultUnitOfWork
from cmk_trio.rpckit.clock import Clock
from cmk_trio.rpckit.errors import Unavailable
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.storage import AUDIT

log = logging.getLogger(__name__)

GENESIS = b"\x00" * 32
CHECKPOINT_KEY = "audit-checkpoint"


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
        self.appended = store.signal(AUDIT)
        """Goes up after every append that committed, by this process or another replica."""
        self._pending: list[tuple[AuditEntry, asyncio.Future[int]]] = []
        self._writer: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, store: KeyVaultStore, clock: Clock, mac_key: bytes, sealer: Sealer) -> AuditLog:
        """The log, with its checkpoint key loaded (or made on first start, sealed)."""
        stored = await store.get_service_key(CHECKPOINT_KEY)
        if stored is None:
            signer = CheckpointSigner.generate()
            async with store.unit_of_work() as uow:
                await uow.insert_service_key(
                    CHECKPOINT_KEY, signer.public_raw(), sealer.seal(signer.raw(), CHECKPOINT_KEY)
                )
        else:
            signer = CheckpointSigner.from_raw(sealer.open(stored[1], CHECKPOINT_KEY))
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
            # In a context of its own: the writer's unit of work is not the change of the call
            # that happened to start it, so that call's commit hooks must not see it.
            self._writer = asyncio.create_task(self._drain(), name="audit-group-commit", context=contextvars.Context())
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
        async with self._store.unit_of_work() as uow:
            return await self.append_within(uow, entries)

    async def append_within(self, uow: KeyVaultUnitOfWork, entries: list[AuditEntry]) -> list[int]:
        """Chain `entries` after the head as `uow` sees it, in its transaction: they commit
        with whatever else it writes (the change they record), or not at all. Readers are
        told once it has committed (`appended`)."""
        sequence, previous = await uow.audit_head() or (0, GENESIS)
        records = []
        for entry in entries:
            sequence += 1
            previous = audit_mac(self._mac_key, previous, {"sequence": sequence, **entry.canonical()})
            records.append(AuditRecord(sequence, entry, previous))
        await uow.insert_audit_records(records)
        return [record.sequence for record in records]

    async def query(
        self,
        *,
        vault: Vault | None = None,
        vault_name: str | None = None,
        key_name: str | None = None,
        caller_object_id: str | None = None,
        result: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> list[AuditRecord]:
        return await self._store.audit_records(
            after=after,
            limit=limit,
            vault=vault,
            vault_name=vault_name,
            key_name=key_name,
            caller_object_id=caller_object_id,
            result=result,
            since=since,
            until=until,
        )

    async def count(self) -> int:
        head = await self._store.audit_head()
        return head[0] if head else 0

    async def checkpoint(self) -> Checkpoint:
        """Sign the current head, store the checkpoint, and return it (to be saved elsewhere)."""
        count, head = await self._store.audit_head() or (0, GENESIS)
        when = self._clock.now().isoformat(timespec="microseconds")
        unsigned = Checkpoint(count, head, when, b"")
        signed = Checkpoint(count, head, when, self.signer.sign(unsigned.message()))
        async with self._store.unit_of_work() as uow:
            await uow.save_checkpoint(signed)
        return signed

    async def latest_checkpoint(self) -> Checkpoint | None:
        return await self._store.latest_checkpoint()

    async def verify(self, checkpoints: Sequence[Checkpoint] = ()) -> Verification:
        """Walk the whole chain, then hold it against the checkpoints given (a saved copy is
        what catches cut-off records, since whoever cuts records can cut the stored
        checkpoint too), or else against the latest stored checkpoint."""
        latest = await self.latest_checkpoint()
        to_check = list(checkpoints) or ([latest] if latest is not None else [])
        wanted = {c.count for c in to_check}
        macs: dict[int, bytes] = {}
        previous, count = GENESIS, 0
        while records := await self._store.audit_records(after=count, limit=1000):
            for record in records:
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
