"""`cmk demo`: the seed document walked against a running trio, or a private one started
for the walk (the steps themselves are in demo.py)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from cmk_trio.cli.common import State, command, read_operator_file
from cmk_trio.cli.profile import Profile, profile_name

# Imports inside functions: the walk (the clients and gRPC), the launcher (all three
# services), the health check's stubs, the event loop's runner and tempfile are imported when
# `cmk demo` runs, not when `cmk` starts, so that `cmk --help` loads none of them (see
# cli/common.py).


def register(cli: click.Group) -> None:
    """Add `demo` to `cmk`."""
    cli.add_command(demo)


@command(None, "demo", queryable=False)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    envvar="CMK_DATA_DIR",
    default=None,
    help="where the running trio keeps its data (operator.json, tls) [the signed-in operator file's"
    " directory, else .cmk]",
)
@click.option("--port-base", type=int, default=None, help="the trio's port base, when not signed in [50050]")
@click.option("--private", is_flag=True, help="start a private trio in a temporary directory and walk that")
def demo(state: State, data_dir: Path | None, port_base: int | None, private: bool) -> None:
    """Walk the seed document against the trio you are signed in to (or --endpoint and the
    others, or --port-base, or a --private one); exit 0 only if every step behaved as the
    seed says. The walk acts as the platform operator: sign in with --operator-file."""
    from cmk_trio.rpckit.server import run

    run(lambda: _demo(state, data_dir, port_base, private))


def _target(state: State, data_dir: Path | None, port_base: int | None) -> tuple[dict[str, str], Path]:
    """The endpoints to walk and the operator file, from (first wins) the command line, the
    signed-in profile, and the defaults of `cmk up` (whose TLS files are taken too)."""
    profile = Profile.load(state.profile_path)
    if port_base is not None or profile is None:
        base = 50050 if port_base is None else port_base
        endpoints = {n: f"127.0.0.1:{base + i}" for n, i in (("identity", 1), ("keyvault", 2), ("speech", 3))}
    else:
        endpoints = {"identity": profile.identity_endpoint, "keyvault": profile.keyvault_endpoint,
                     "speech": profile.speech_endpoint}  # fmt: skip
        missing = [name for name, endpoint in endpoints.items() if not endpoint]
        if missing:
            raise click.ClickException(
                f"the signed-in profile ({profile_name(state.profile_path)}) has no {' or '.join(missing)} endpoint:"
                " cmk login with --keyvault-endpoint and --speech-endpoint, or give them to cmk demo"
            )
    given = {"identity": state.endpoint, "keyvault": state.keyvault_endpoint, "speech": state.speech_endpoint}
    endpoints.update({name: endpoint for name, endpoint in given.items() if endpoint})
    if profile is not None and not profile.operator_file and data_dir is None:
        # Signed in as someone else: walking as the operator found in ./.cmk would act for
        # another identity than the one signed in, perhaps against another trio.
        raise click.ClickException(
            f"cmk demo acts as the platform operator, and the signed-in profile ({profile_name(state.profile_path)})"
            " is not: sign in with --operator-file, use --profile, or give --data-dir of the running trio"
        )
    if profile is not None and profile.operator_file and data_dir is None:
        operator_file = Path(profile.operator_file)
        data_dir = operator_file.parent
    else:
        data_dir = data_dir or Path(".cmk")
        operator_file = data_dir / "operator.json"
    if state.tls_dir is None:
        if profile is not None and profile.tls_dir:
            state.tls_dir = profile.tls_dir
        elif (data_dir / "tls" / "ca.crt").exists():
            state.tls_dir = str(data_dir / "tls")  # the running trio's own development PKI
    return endpoints, operator_file


async def _demo(state: State, data_dir: Path | None, port_base: int | None, private: bool) -> None:
    import tempfile

    from cmk_trio.cli.demo import run_demo
    from cmk_trio.launcher.trio import start_trio

    def say(text: str) -> None:
        if state.output != "json":
            click.echo(text)

    trio = None
    with tempfile.TemporaryDirectory(prefix="cmk-demo-") as tmp:
        if private:
            data_dir = Path(tmp)
            private_env = {k: v for k, v in os.environ.items() if k != "CMK_DATABASE_URL"}
            say("starting a private trio for the walk")
            trio = await start_trio(data_dir, mutual_tls=True, env=private_env)
            endpoints, operator_file = trio.endpoints, data_dir / "operator.json"
            state.tls_dir = str(trio.tls_dir)
        else:
            endpoints, operator_file = _target(state, data_dir, port_base)
            if not await _serving(state, endpoints["identity"]):
                raise click.ClickException(
                    f"no trio answers at {endpoints['identity']}: start one (python3 dev.py up), sign in to the one"
                    " you have (cmk login), or walk a private one (cmk demo --private)"
                )
            if not operator_file.exists():
                raise click.ClickException(f"no operator credential at {operator_file}: give --data-dir of the trio")
        say(f"walking the seed against {endpoints['identity']}, {endpoints['keyvault']}, {endpoints['speech']}")
        try:
            report = await run_demo(endpoints, read_operator_file(operator_file), say, dial=state.dial)
        finally:
            if trio is not None:
                await trio.stop()
    ok = all(s["ok"] for s in report.steps) and bool(report.steps)
    if state.output == "json":
        click.echo(json.dumps({"ok": ok, "steps": report.steps}, indent=2))
    else:
        click.echo("the seed behaved as written" if ok else "the seed did NOT behave as written")
    if not ok:
        sys.exit(1)


async def _serving(state: State, endpoint: str) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    channel = state.dial(endpoint)
    try:
        stub: Any = health_pb2_grpc.HealthStub(channel)  # the stub's methods are set at run time
        reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
    except grpc.aio.AioRpcError:
        return False
    finally:
        await channel.close()
