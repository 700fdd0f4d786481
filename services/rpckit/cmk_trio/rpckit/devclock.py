"""The development time control (cmk.common.v1.DevService), shared by the services."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from google.protobuf import timestamp_pb2

from cmk_trio.proto.common.v1 import dev_service_pb2 as pb
from cmk_trio.proto.common.v1 import dev_service_pb2_grpc as pb_grpc
from cmk_trio.rpckit.clock import ShiftableClock
from cmk_trio.rpckit.errors import FailedPrecondition, invalid_field
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.types import Context

MAX_STEP = timedelta(days=3650)


class DevApi(pb_grpc.DevServiceServicer):
    """Moves the service clock, if the service has one that moves (else refuses), for the
    caller that `require_operator(context)` accepts."""

    def __init__(self, clock: ShiftableClock | None, require_operator: Callable[[Context], Awaitable[None]]) -> None:
        self._clock = clock
        self._require_operator = require_operator

    async def AdvanceClock(self, request: pb.AdvanceClockRequest, context: Context) -> pb.AdvanceClockResponse:
        if self._clock is None:
            raise FailedPrecondition(
                Reason.CLOCK_CONTROL_DISABLED,
                "this service was not started with --dev-time-control; its clock cannot be moved",
            )
        await self._require_operator(context)
        if not 1 <= request.seconds <= MAX_STEP.total_seconds():  # checked before it becomes a timedelta
            raise invalid_field("seconds", Reason.FIELD_INVALID, "must be between 1 second and 10 years")
        step = timedelta(seconds=request.seconds)
        self._clock.advance(step)
        now = timestamp_pb2.Timestamp()
        now.FromDatetime(self._clock.now())
        return pb.AdvanceClockResponse(now=now, offset_seconds=int(self._clock.offset.total_seconds()))
