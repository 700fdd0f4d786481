"""cmk.keyvault.v1.AuditService (the audit log) and EventService (the key vault's event stream)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

from cmk_trio.keyvault.api.convert import audit_record_pb, checkpoint_pb, event_pb
from cmk_trio.keyvault.api.trail import AuditTrail
from cmk_trio.keyvault.audit import AuditLog
from cmk_trio.keyvault.callers import require_event_reader, require_operator
from cmk_trio.keyvault.model import AuditRecord, Checkpoint, Event, EventType
from cmk_trio.keyvault.vaults import Vaults
from cmk_trio.platform.key_names import key_name, vault_name
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2 as pb
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2_grpc as pb_grpc
from cmk_trio.proto.keyvault.v1 import resources_pb2 as res
from cmk_trio.rpckit.errors import FailedPrecondition, invalid_field
from cmk_trio.rpckit.events import ChangeNotifier, tail
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.storage import decode_sequence_token, encode_page_token, page_size_of
from cmk_trio.rpckit.timestamps import from_timestamp
from cmk_trio.rpckit.types import Context
from cmk_trio.rpckit.validation import require_uuid


class AuditApi(pb_grpc.AuditServiceServicer):
    """cmk.keyvault.v1.AuditService."""

    def __init__(self, audit: AuditLog, vaults: Vaults, trail: AuditTrail) -> None:
        self._audit = audit
        self._vaults = vaults
        self._trail = trail

    async def ListAuditRecords(
        self, request: pb.ListAuditRecordsRequest, context: Context
    ) -> pb.ListAuditRecordsResponse:
        async with self._trail.call("ListAuditRecords") as scope:
            vault = vault_of_parent(request.parent) if request.parent else ""
            scope.vault_name = vault
            incarnation = await self._vaults.require_audit_reader(scope.authenticated, vault)
            if request.result and request.result not in ("allowed", "denied", "error"):
                raise invalid_field("result", Reason.FIELD_INVALID, "must be allowed, denied or error")
            # The filters are names and ids as the records hold them, checked before any reaches
            # the database (PostgreSQL refuses a NUL in text: the fuzz found it).
            if request.caller_object_id:
                require_uuid("caller_object_id", request.caller_object_id)
            if request.key_name:
                key_name("key_name", request.key_name)
            after = decode_sequence_token("audit", request.page_token)
            limit = page_size_of(request.page_size)
            found = await self._audit.query(
                vault=incarnation,
                vault_name=vault if vault and incarnation is None else None,
                key_name=request.key_name or None,
                caller_object_id=request.caller_object_id or None,
                result=request.result or None,
                since=from_timestamp("start_time", request.start_time) if request.HasField("start_time") else None,
                until=from_timestamp("end_time", request.end_time) if request.HasField("end_time") else None,
                after=after,
                limit=limit,
            )
            return pb.ListAuditRecordsResponse(
                records=[audit_record_pb(r) for r in found],
                next_page_token=encode_page_token("audit", str(found[-1].sequence)) if len(found) == limit else "",
            )

    async def StreamAuditRecords(
        self, request: pb.StreamAuditRecordsRequest, context: Context
    ) -> AsyncIterator[res.AuditRecord]:
        async with self._trail.call("StreamAuditRecords") as scope:
            require_operator(scope.authenticated)
            if request.after_sequence < 0:
                raise invalid_field("after_sequence", Reason.FIELD_INVALID, "must not be negative")

        async def fetch(after: int, limit: int) -> list[AuditRecord]:
            return await self._audit.query(after=after, limit=limit)

        async for record in tail(fetch, lambda r: r.sequence, self._audit.appended, request.after_sequence):
            yield audit_record_pb(record)

    async def CreateAuditCheckpoint(
        self, request: pb.CreateAuditCheckpointRequest, context: Context
    ) -> res.AuditCheckpoint:
        async with self._trail.call("CreateAuditCheckpoint") as scope:
            require_operator(scope.authenticated)
            return checkpoint_pb(await self._audit.checkpoint())

    async def VerifyAuditLog(self, request: pb.VerifyAuditLogRequest, context: Context) -> pb.VerifyAuditLogResponse:
        async with self._trail.call("VerifyAuditLog") as scope:
            require_operator(scope.authenticated)
            given: list[Checkpoint] = []
            if request.HasField("checkpoint"):
                c = request.checkpoint
                try:
                    given.append(Checkpoint(int(c.count), bytes.fromhex(c.head), c.time, base64.b64decode(c.signature)))
                except ValueError:
                    raise invalid_field("checkpoint", Reason.FIELD_INVALID, "is not a checkpoint of this log") from None
            result = await self._audit.verify(given)
            return pb.VerifyAuditLogResponse(
                ok=result.ok,
                records=result.records,
                first_broken_record=result.first_broken or 0,
                problem=result.problem,
            )

    async def GetAuditPublicKey(
        self, request: pb.GetAuditPublicKeyRequest, context: Context
    ) -> pb.GetAuditPublicKeyResponse:
        async with self._trail.call("GetAuditPublicKey"):
            return pb.GetAuditPublicKeyResponse(public_key=base64.b64encode(self._audit.public_key).decode())


def vault_of_parent(parent: str) -> str:
    """The vault of a "vaults/{vault_name}" parent."""
    if not parent.startswith("vaults/"):
        raise invalid_field("parent", Reason.NAME_MALFORMED, "must look like vaults/{vault_name}")
    return vault_name("parent", parent.removeprefix("vaults/"))


class EventApi(pb_grpc.EventServiceServicer):
    """cmk.keyvault.v1.EventService."""

    def __init__(self, vaults: Vaults, trail: AuditTrail, notifier: ChangeNotifier, *, heartbeat: float = 5.0) -> None:
        self._heartbeat = heartbeat
        self._vaults = vaults
        self._trail = trail
        self._notifier = notifier

    async def WatchEvents(self, request: pb.WatchEventsRequest, context: Context) -> AsyncIterator[res.Event]:
        async with self._trail.call("WatchEvents") as scope:
            require_event_reader(scope.authenticated)
            last = await self._vaults.store.last_sequence()
            if not 0 <= request.after_sequence <= last:
                raise FailedPrecondition(
                    Reason.EVENT_CURSOR_AHEAD,
                    f"the cursor {request.after_sequence} is not within 0-{last}; start from 0",
                    metadata={"last_sequence": str(last)},
                )
        events = tail(
            self._vaults.store.events_after, lambda e: e.sequence, self._notifier, request.after_sequence,
            heartbeat=self._heartbeat,
            idle_item=lambda: Event(0, EventType.HEARTBEAT, self._vaults.clock.now()),
        )  # fmt: skip
        async for event in events:
            yield event_pb(event)
