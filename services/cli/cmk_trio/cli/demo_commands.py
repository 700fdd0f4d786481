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


def register(cli: click.Group) -> None:
    """Add `demo` to `cmk`."""
    cli.add_command(demo)


@command(None, "demo")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    envvar="CMK_DATA_DIR",
    default=Path(".cmk"),
    show_default=True,
    help="where the running trio keeps its data (operator.json, speech.db)",
)
@click.option("--port-base", type=int, default=50050, show_default=True)
@click.option("--private", is_flag=True, help="start a private trio in a temporary directory")
@click.option(
    "--database-url",
    envvar="CMK_DATABASE_URL",
    default="",
    help="the PostgreSQL database of the running trio, if it has one (to look at the stored ciphertext)",
)
def demo(state: State, data_dir: Path, port_base: int, private: bool, database_url: str) -> None:
    """Walk the seed document against a running trio (or a private one); exit 0 only if every
    step behaved as the seed says."""
    from cmk_trio.rpckit.server import run

    run(lambda: _demo(state, data_dir, port_base, private, database_url))


async def _demo(state: State, data_dir: Path, port_base: int, private: bool, database_url: str) -> None:
    import tempfile

    from cmk_trio.cli.demo import run_demo
    from cmk_trio.launcher.trio import start_trio

    def say(text: str) -> None:
        if state.output != "json":
            click.echo(text)

    endpoints = {
        name: f"127.0.0.1:{port_base + offset}" for name, offset in (("identity", 1), ("keyvault", 2), ("speech", 3))
    }
    # The group's --endpoint, --keyvault-endpoint and --speech-endpoint win over the port base.
    given = {"identity": state.endpoint, "keyvault": state.keyvault_endpoint, "speech": state.speech_endpoint}
    endpoints.update({name: endpoint for name, endpoint in given.items() if endpoint})
    if state.tls_dir is None and (data_dir / "tls" / "ca.crt").exists():
        state.tls_dir = str(data_dir / "tls")  # the running trio's own development PKI
    if not private and not (await _serving(state, endpoints["identity"]) and (data_dir / "operator.json").exists()):
        say(f"no trio answers at {endpoints['identity']} with its data in {data_dir}: starting a private one")
        private = True
    trio = None
    with tempfile.TemporaryDirectory(prefix="cmk-demo-") as tmp:
        if private:
            data_dir = Path(tmp)
            database_url = ""
            private_env = {k: v for k, v in os.environ.items() if k != "CMK_DATABASE_URL"}
            trio = await start_trio(data_dir, mutual_tls=True, env=private_env)
            endpoints = trio.endpoints
            state.tls_dir = str(trio.tls_dir)
        try:
            report = await run_demo(
                endpoints,
                read_operator_file(data_dir / "operator.json"),
                data_dir,
                say,
                dial=state.dial,
                database_url=database_url,
            )
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
        stub: Any = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
    except grpc.aio.AioRpcError:
        return False
    finally:
        await channel.close()
