"""`cmk clock advance`: moving a service's clock forward (development time control)."""

from __future__ import annotations

import click

from cmk_trio.cli.common import State, command, load_profile, profile_tokens
from cmk_trio.cli.output import emit
from cmk_trio.rpckit import audiences

# Imports inside functions: the client's calls and the generated code of the development
# service (gRPC with them) are imported when `cmk clock advance` runs, not when `cmk` starts,
# so that `cmk --help` loads none of them (see cli/common.py).


def register(cli: click.Group) -> None:
    """Add the `clock` group to `cmk`."""
    cli.add_command(clock)


@click.group()
def clock() -> None:
    """Development time control (services started with --dev-time-control; operator only)."""


SERVICES = ("keyvault", "speech", "identity")
"""In the order they are moved: identity last, so that the tokens it issued for the others
before any clock moved are still current on each when it is told to move."""


@command(clock, "advance")
@click.option(
    "--service",
    type=click.Choice([*SERVICES, "all"]),
    default="all",
    show_default=True,
    help="the service whose clock moves; all: the three by the same amount, so that tokens and dates agree",
)
@click.option("--seconds", type=int, default=0)
@click.option("--days", type=int, default=0)
async def clock_advance(state: State, service: str, seconds: int, days: int) -> None:
    """Move the services' clocks forward, so retention, purge dates, rotation policies and token
    expiry can be exercised without waiting."""
    from cmk_trio.client.calls import call
    from cmk_trio.proto.common.v1 import dev_service_pb2 as dev_pb
    from cmk_trio.proto.common.v1 import dev_service_pb2_grpc as dev_grpc

    profile = load_profile(state)
    identity = state.dial(state.endpoint or profile.identity_endpoint, profile, peer="identity")
    endpoints = {
        "keyvault": state.keyvault_endpoint or profile.keyvault_endpoint,
        "speech": state.speech_endpoint or profile.speech_endpoint,
    }
    chosen = SERVICES if service == "all" else (service,)
    targets = {
        name: identity if name == "identity" else state.dial(endpoints[name], profile, peer=name) for name in chosen
    }
    moved = []
    try:
        tokens = profile_tokens(state, profile, identity)
        issued = {a: await tokens(a) for a in {audiences.DIRECTORY, audiences.MANAGEMENT}}
        for name in chosen:
            audience = audiences.DIRECTORY if name == "identity" else audiences.MANAGEMENT
            reply = await call(
                dev_grpc.DevServiceStub(targets[name]).AdvanceClock,
                dev_pb.AdvanceClockRequest(seconds=seconds + days * 86400),
                token=issued[audience],
            )
            moved.append({"service": name, "now": reply.now.ToJsonString(), "offset_seconds": reply.offset_seconds})
    finally:
        for channel in {*targets.values(), identity}:
            await channel.close()
    emit(state.output, moved[0] if service != "all" else {"services": moved})
