"""`cmk load`: one load scenario against a running trio or a private one, with a latency
summary (and, with --plot, the latency-by-percentile curve)."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cmk_trio.cli.common import State, command, read_operator_file
from cmk_trio.cli.output import emit
from cmk_trio.rpckit.errors import ServiceError

# Imports inside functions: the launcher (all three services), the load generator (the
# clients and gRPC), the event loop's runner and tempfile are imported when `cmk load` runs,
# not when `cmk` starts, so that `cmk --help` loads none of them (see cli/common.py);
# matplotlib, an optional dependency (cmk-trio[plot]), only with --plot.

if TYPE_CHECKING:
    from cmk_trio.loadgen.scenarios import Prepared


def register(cli: click.Group) -> None:
    """Add `load` to `cmk`."""
    cli.add_command(load)


@command(None, "load", queryable=False)
@click.argument("scenario", type=click.Choice(["read", "read-mm", "unwrap", "token", "write", "mixed"]))
@click.option("--concurrency", type=int, default=16, show_default=True, help="closed loop: workers back to back")
@click.option("--rate", type=float, default=None, help="open loop: requests started per second instead")
@click.option("--duration", type=float, default=10.0, show_default=True, help="seconds to measure")
@click.option("--requests", "request_count", type=int, default=None, help="or: this many requests")
@click.option("--warmup", type=float, default=2.0, show_default=True, help="seconds not measured")
@click.option("--weights", default="", help="for mixed: read=80,read-mm=10,unwrap=5,write=5")
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path(".cmk"), show_default=True)
@click.option("--port-base", type=int, default=50050, show_default=True)
@click.option("--private", is_flag=True, help="start a private trio in a temporary directory")
@click.option("--allow-remote", is_flag=True, help="allow a target that is not on loopback")
@click.option(
    "--plot",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="also write the latency-by-percentile plot to this PNG file (needs matplotlib)",
)
@click.option("--keep", is_flag=True, help="keep the tenant's resources, vault and principals after the run")
def load(state: State, scenario: str, concurrency: int, rate: float | None, duration: float,
         request_count: int | None, warmup: float, weights: str, data_dir: Path, port_base: int,
         private: bool, allow_remote: bool, plot: Path | None, keep: bool) -> None:  # fmt: skip
    """Load-test the trio with one scenario: read (a CMK resource's application, the cached
    data key path), read-mm, unwrap (the vault's cold path), token, write, or mixed."""
    from cmk_trio.rpckit.server import run

    mix = None
    if weights:
        try:
            mix = {k: int(v) for k, v in (pair.split("=") for pair in weights.split(","))}
        except ValueError:
            raise click.BadParameter("use name=weight pairs: read=80,write=20", param_hint="--weights") from None
    if plot is not None:
        try:
            import matplotlib  # noqa: F401  (checked before the run, not after it)
        except ImportError:
            raise click.ClickException("--plot needs matplotlib: pip install 'cmk-trio[plot]'") from None
    run(lambda: _load(state, scenario, concurrency, rate, duration, request_count, warmup, mix, data_dir,
                      port_base, private, allow_remote, plot, keep))  # fmt: skip


async def _clean_up(prepared: Prepared) -> list[str]:
    """What the run made, deleted as far as the target lets: a target that stopped mid-run
    costs the clean-up (said so), never the report of what was measured."""
    try:
        return list(await prepared.clean_up())
    except ServiceError as exc:
        return [f"everything the run made (tenant {prepared.tenant_id}, its resources, vault and principals): "
                f"the clean-up was refused ({exc.reason.value}: {exc.message})"]  # fmt: skip


async def _load(state: State, scenario_name: str, concurrency: int, rate: float | None, duration: float,
                request_count: int | None, warmup: float, mix: dict[str, int] | None, data_dir: Path,
                port_base: int, private: bool, allow_remote: bool, plot: Path | None,
                keep: bool) -> None:  # fmt: skip
    import tempfile

    from cmk_trio.launcher.trio import start_trio
    from cmk_trio.loadgen.runner import Result, run_closed, run_open
    from cmk_trio.loadgen.scenarios import prepare, scenario

    endpoints = {n: f"127.0.0.1:{port_base + o}" for n, o in (("identity", 1), ("keyvault", 2), ("speech", 3))}
    given = {"identity": state.endpoint, "keyvault": state.keyvault_endpoint, "speech": state.speech_endpoint}
    endpoints.update({name: endpoint for name, endpoint in given.items() if endpoint})
    for endpoint in endpoints.values():
        host = endpoint.rsplit(":", 1)[0].strip("[]")
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback and not allow_remote:
            raise click.ClickException(f"{endpoint} is not on loopback; give --allow-remote to load it anyway")

    def progress(result: Result) -> None:
        click.echo(f"\r{result.requests} requests, {sum(result.errors.values())} errors, "
                   f"{result.throughput:,.0f}/s   ", err=True, nl=False)  # fmt: skip

    if state.tls_dir is None and (data_dir / "tls" / "ca.crt").exists():
        state.tls_dir = str(data_dir / "tls")
    trio = None
    with tempfile.TemporaryDirectory(prefix="cmk-load-") as tmp:
        if private:
            data_dir = Path(tmp)
            trio = await start_trio(data_dir, mutual_tls=True)
            endpoints, state.tls_dir = trio.endpoints, str(trio.tls_dir)
        try:
            platform = None  # the speech platform's sign-in, where the trio runs here: unwrap as speech does
            if (data_dir / "speech-credentials.json").exists():
                platform = read_operator_file(data_dir / "speech-credentials.json")
            prepared = await prepare(endpoints, read_operator_file(data_dir / "operator.json"), state.dial, platform)
            try:
                request = scenario(scenario_name, prepared, mix)
                if rate:
                    result = await run_open(request, scenario=scenario_name, rate=rate, duration=duration,
                                            requests=request_count, warmup=warmup, progress=progress)  # fmt: skip
                else:
                    result = await run_closed(request, scenario=scenario_name, concurrency=concurrency,
                                              duration=None if request_count else duration, requests=request_count,
                                              warmup=warmup, progress=progress)  # fmt: skip
            finally:
                try:
                    if not keep and not private:  # a private trio goes away whole
                        for left in await _clean_up(prepared):
                            click.echo(f"\nleft behind: {left}", err=True, nl=False)
                finally:
                    await prepared.close()
        finally:
            if trio is not None:
                await trio.stop()
    click.echo("", err=True)
    summary = result.summary()
    if scenario_name in ("unwrap", "mixed"):
        summary["unwrap_as"] = "managed identity" if platform is not None else "application principal"
    if plot is not None:
        from cmk_trio.loadgen.plot import write_percentile_plot

        write_percentile_plot([result], plot, f"cmk load {scenario_name}")
        summary["plot"] = str(plot)
    if state.output == "json":
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"{summary['scenario']} ({summary['mode']}): {summary['requests']} requests in {summary['seconds']} s, "
               f"{summary['throughput_per_s']}/s, errors: {summary['errors'] or 'none'}")  # fmt: skip
    emit("table", [summary["latency_ms"]], list(summary["latency_ms"]))
    if plot is not None:
        click.echo(f"latency plot: {plot}")
