"""`cmk`: run the services and drive them from a shell.

\b
    cmk serve identity --data-dir DIR --port N     start one service (N=0: a free port)
    cmk up                                         start the trio in ./.cmk
    cmk login --endpoint H:P --operator-file F     sign in (token kept in a 0600 profile)
    cmk tenant|subscription|principal|secret|role|token|signing-key|events ...
    cmk health --endpoint H:P                      the standard gRPC health check

Every command takes `--output json`.
"""

from __future__ import annotations

from collections.abc import Sequence

import click

from cmk_trio.cli import (
    clock_commands,
    demo_commands,
    identity_commands,
    keyvault_commands,
    load_commands,
    login_commands,
    serve_commands,
    speech_commands,
)
from cmk_trio.cli.common import State


@click.group(help=__doc__)
@click.version_option(package_name="cmk-trio", prog_name="cmk", message="%(prog)s %(version)s")
@click.option("--output", "-o", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--profile", envvar="CMK_PROFILE", help="profile file (default ~/.config/cmk/profile.json)")
@click.option("--endpoint", envvar="CMK_IDENTITY_ENDPOINT", help="identity endpoint host:port (overrides the profile)")
@click.option("--keyvault-endpoint", envvar="CMK_KEYVAULT_ENDPOINT", help="key vault endpoint (overrides the profile)")
@click.option("--speech-endpoint", envvar="CMK_SPEECH_ENDPOINT", help="speech endpoint (overrides the profile)")
@click.option("--tls-dir", envvar="CMK_TLS_DIR", help="PKI directory for mutual TLS (ca.crt, cli.crt, cli.key)")
@click.pass_context
def cli(
    ctx: click.Context,
    output: str,
    profile: str | None,
    endpoint: str | None,
    keyvault_endpoint: str | None,
    speech_endpoint: str | None,
    tls_dir: str | None,
) -> None:
    """The `cmk` command group: its options become the State every command receives."""
    ctx.obj = State(output, profile, endpoint, keyvault_endpoint, speech_endpoint, tls_dir)


serve_commands.register(cli)
login_commands.register(cli)
identity_commands.register(cli)
keyvault_commands.register(cli)
speech_commands.register(cli)
load_commands.register(cli)
clock_commands.register(cli)
demo_commands.register(cli)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `cmk` console script."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="cmk")
