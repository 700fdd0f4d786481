"""`cmk`: run the services and drive them from a shell.

\b
    cmk serve identity --data-dir DIR --port N     start one service (N=0: a free port)
    cmk up                                         start the trio in ./.cmk
    cmk login --endpoint H:P --operator-file F     sign in (token kept in a 0600 profile)
    cmk tenant|subscription|principal|secret|role|token|signing-key|events ...
    cmk health --endpoint H:P                      the standard gRPC health check

Every command takes `--output json|tsv|table` and `--query JMESPATH`.
"""

from __future__ import annotations

import json
import os
import sys
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
from cmk_trio.cli.common import OUTPUTS, State, report_error
from cmk_trio.rpckit.datadir import StartupError
from cmk_trio.rpckit.errors import ServiceError

# gRPC's own log lines (a failed TLS handshake at INFO, a certificate naming another service
# at ERROR) are not for the person at the shell: the CLI says what went wrong in one line of
# its own (cli/diagnose.py).
os.environ.setdefault("GRPC_VERBOSITY", "NONE")


@click.group(help=__doc__)
@click.version_option(package_name="cmk-trio", prog_name="cmk", message="%(prog)s %(version)s")
@click.option("--output", "-o", type=click.Choice(OUTPUTS), default="table", show_default=True)
@click.option("--profile", envvar="CMK_PROFILE",
              help="the named profile to use (each signs in on its own; in $XDG_CONFIG_HOME/cmk), or a profile file"
                   " [default]")  # fmt: skip
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
    """Entry point of the `cmk` console script. Errors go to standard error whatever the
    output: a usage error (or another refusal of the command line) is JSON there under
    `--output json`, as a service's error is; standard output holds only results."""
    args = list(argv) if argv is not None else sys.argv[1:]
    try:
        try:
            code = cli.main(args=args, prog_name="cmk", standalone_mode=False)
        except (ServiceError, StartupError) as exc:  # from a command that is not async (whoami, logout)
            report_error(exc, json_output=_wants_json(args))
    except click.ClickException as exc:
        if not _wants_json(args):
            exc.show()
            sys.exit(exc.exit_code)
        usage = isinstance(exc, click.UsageError)
        error: dict[str, object] = {"code": "USAGE" if usage else "FAILED", "reason": "CLI_USAGE" if usage else "CLI",
                                    "message": exc.format_message()}  # fmt: skip
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            error["usage"] = exc.ctx.get_usage()
        click.echo(json.dumps({"error": error}, indent=2), err=True)
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def _wants_json(args: Sequence[str]) -> bool:
    """Whether the command line asks for JSON (read from the words themselves: a usage
    error may come before the option was parsed)."""
    for i, arg in enumerate(args):
        if arg == "--":
            return False
        if arg in {"--output=json", "-ojson"} or (arg in {"--output", "-o"} and args[i + 1 : i + 2] == ["json"]):
            return True
    return False
