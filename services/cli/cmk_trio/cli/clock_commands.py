"""`cmk clock advance`: moving a service's clock forward (development time control)."""

from __future__ import annotations

import click

from cmk_trio.cli.common import State, command, load_profile, profile_tokens
from cmk_trio.cli.output import emit
from cmk_trio.rpckit import audiences


def register(cli: click.Group) -> None:
    """Add the `clock` group to `cmk`."""
    cli.add_command(clock)


@click.group()
def clock() -> None:
    """Development time control (services started with --dev-time-control; operator only)."""


@command(clock, "advance")
@click.option("--service", type=click.Choice(["identity", "keyvault"]), required=True)
@click.option("--seconds", type=int, default=0)
@click.option("--days", type=int, default=0)
async def clock_advance(state: State, service: str, seconds: int, days: int) -> None:
    """Move a service's clock forward, so retention, purge dates, rotation policies and token
    expiry can be exercised without waiting."""
    from cmk_trio.client.identity import call
    from cmk_trio.proto.common.v1 import dev_service_pb2 as dev_pb
    from cmk_trio.proto.common.v1 import dev_service_pb2_grpc as dev_grpc

    profile = load_profile(state)
    identity = state.dial(state.endpoint or profile.identity_endpoint, profile)
    target = (
        identity if service == "identity" else state.dial(state.keyvault_endpoint or profile.keyvault_endpoint, profile)
    )
    try:
        tokens = profile_tokens(state, profile, identity)
        audience = audiences.DIRECTORY if service == "identity" else audiences.MANAGEMENT
        reply = await call(
            dev_grpc.DevServiceStub(target).AdvanceClock,
            dev_pb.AdvanceClockRequest(seconds=seconds + days * 86400),
            token=await tokens(audience),
        )
    finally:
        if target is not identity:
            await target.close()
        await identity.close()
    emit(state.output, {"service": service, "now": reply.now.ToJsonString(), "offset_seconds": reply.offset_seconds})
