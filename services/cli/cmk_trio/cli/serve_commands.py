"""`cmk serve identity|keyvault|speech|proxy|arm`, `cmk up`, `cmk health` and `cmk certs`: starting the
services and checking on them. The starting itself is cmk_trio.launcher's; what is printed
(the banners) is the CLI's."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from cmk_trio.cli.common import State, command
from cmk_trio.cli.output import emit
from cmk_trio.rpckit.datadir import StartupError

if TYPE_CHECKING:
    from cmk_trio.identity.announcement import Announcement
    from cmk_trio.rpckit.bootstrap import Served
    from cmk_trio.rpckit.process import Stoppable
    from cmk_trio.rpckit.settings import ServiceSettings

# Imports inside functions: each service's settings and server, the launcher, the process
# and event loop plumbing, the development CA and gRPC's health stubs are imported when a
# command runs, not when `cmk` starts, so that `cmk --help` imports no service (see
# cli/common.py; SettingsCommand makes a serve command's flags when it is first used, for the
# same reason).

S = TypeVar("S", bound="Stoppable")
C = TypeVar("C", bound="ServiceSettings")

# One option for `serve identity|keyvault|speech` and `up`: the same flag, variable and default.
data_dir_option = click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    envvar="CMK_DATA_DIR",
    default=Path(".cmk"),
    show_default=True,
    help="where the database, key files and credentials are kept",
)


def register(cli: click.Group) -> None:
    """Add `serve`, `up`, `health` and `certs` to `cmk`."""
    for made in (serve, up, health, certs):
        cli.add_command(made)


def announce(announcement: Announcement, output: str) -> None:
    """Print what a start announces: one JSON line (which scripts and tests wait for) or
    lines for people, flushed at once because a pipe would otherwise hold them back."""
    if output == "json":
        click.echo(announcement.to_json())
    else:
        for line in announcement.lines():
            click.echo(line)
    sys.stdout.flush()


@click.group()
def serve() -> None:
    """Start one service in the foreground."""


DATABASE_URL = click.option(
    "--database-url",
    envvar="CMK_DATABASE_URL",
    default=None,
    help="postgresql://USER@HOST:PORT/DATABASE: keep the tables there, shared by any number of replicas"
    " (default: a SQLite file in the data directory, for one process)",
)
HIDE_SECRET = click.option(
    "--hide-operator-secret",
    is_flag=True,
    envvar="CMK_HIDE_OPERATOR_SECRET",
    help="write the operator's new client secret only to its 0600 file, not to standard output (containers)",
)


class SettingsCommand(click.Command):
    """A `serve` command whose flags are its service's settings (rpckit.settings: the same
    names, variables and help as the service reads), made when the command is first used,
    so that `cmk --help` imports no service."""

    # (click's own arguments for a command, passed on as they are)
    def __init__(self, *args: Any, settings: Callable[[], type[ServiceSettings]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._settings = settings
        self._made = False

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        if not self._made:
            from cmk_trio.rpckit.settings import options

            made = [
                click.Option([o.flag, o.env.lower()], is_flag=o.switch, default=None, help=f"{o.help} [{o.env}]")
                for o in options(self._settings())
            ]
            self.params[0:0] = made
            self._made = True
        return super().get_params(ctx)


def _config(service: str) -> type[ServiceSettings]:
    """The settings class of `service` (imported when its command is used)."""
    if service == "identity":
        from cmk_trio.identity.config import IdentityConfig

        return IdentityConfig
    if service == "keyvault":
        from cmk_trio.keyvault.config import KeyVaultConfig

        return KeyVaultConfig
    from cmk_trio.speech.config import SpeechConfig

    return SpeechConfig


def _load(settings: type[C], flags: Mapping[str, str | bool | None]) -> C:
    """The service's settings from the environment and the flags given (a flag stands for its
    variable: the same parser reads both); a bad value or file is one line and exit 1 or 3."""
    from cmk_trio.rpckit.config import ConfigError

    given = {
        name.upper(): "1" if value is True else str(value)
        for name, value in flags.items()
        if value not in (None, False)
    }
    try:
        return settings.load(os.environ, given)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    except StartupError as refusal:  # its credentials file (rpckit.keyfiles)
        _refuse_start(settings.SERVICE.lower(), refusal)


@command(serve, "identity", queryable=False, cls=SettingsCommand, settings=lambda: _config("identity"))
@HIDE_SECRET
def serve_identity(state: State, hide_operator_secret: bool, **flags: str | bool | None) -> None:
    """The identity service (directory, tokens, signing keys, events)."""
    from cmk_trio.identity.announcement import Announcement
    from cmk_trio.identity.config import IdentityConfig
    from cmk_trio.identity.server import IdentityServer, build_server

    config = _load(IdentityConfig, flags)

    def started(server: IdentityServer) -> None:
        metrics = {"identity": server.metrics_url} if server.metrics_url else {}
        announce(Announcement.of(server, metrics=metrics, show_secret=not hide_operator_secret), state.output)

    https = config.http_port is not None and config.tls.enabled
    _serve(
        "identity", config.log_level, lambda: build_server(config), started, "identity: stopping", serves_https=https
    )


@command(None, "up", queryable=False)
@data_dir_option
@click.option("--port-base", type=int, default=50050, show_default=True, help="identity on +1, key vault +2, speech +3")
@click.option("--dev-time-control", is_flag=True, help="let the operator move the services' clocks (tests only)")
@click.option("--auto-approve-cmk", is_flag=True, help="approve CMK requests at once (development only)")
@click.option("--insecure", is_flag=True, help="plain TCP instead of mutual TLS (loopback only)")
@click.option(
    "--replicas",
    type=click.IntRange(1, 16),
    default=1,
    show_default=True,
    help="processes per service, on the one database --database-url names (replica r listens on base+100*r+1..3)",
)
@DATABASE_URL
@HIDE_SECRET
def up(
    state: State,
    data_dir: Path,
    port_base: int,
    dev_time_control: bool,
    auto_approve_cmk: bool,
    insecure: bool,
    replicas: int,
    database_url: str | None,
    hide_operator_secret: bool,
) -> None:
    """Start the services, wired to each other, with their key files in --data-dir.

    Identity, the key vault and speech, in one process with SQLite files in --data-dir, or on
    PostgreSQL with --database-url; with --replicas N, N processes of each service on that
    database. A second `cmk up` on the same directory (and database) resumes with all data intact.
    """

    if insecure:
        click.echo("warning: --insecure: the services talk plain TCP on loopback, without TLS", err=True)
    if replicas > 1 and not database_url:
        raise click.UsageError("--replicas needs --database-url postgresql://... (a SQLite file serves one process)")
    if replicas > 1:
        from cmk_trio.launcher.replicas import RunningReplicas, start_replicas

        def start_many() -> Awaitable[RunningReplicas]:
            return start_replicas(data_dir, port_base, replicas=replicas, database_url=database_url or "",
                                  dev_time_control=dev_time_control, auto_approve=auto_approve_cmk,
                                  mutual_tls=not insecure)  # fmt: skip

        def started_many(running: RunningReplicas) -> None:
            announcement = running.announcement(show_secret=not hide_operator_secret)
            _write_endpoints(data_dir, announcement)
            announce(announcement, state.output)

        _serve("replicas", os.environ.get("CMK_LOG_LEVEL", "INFO"), start_many, started_many, "stopping")
        return

    from cmk_trio.launcher.trio import RunningTrio, start_trio

    environ = {**os.environ, "CMK_DATABASE_URL": database_url} if database_url else None

    def start() -> Awaitable[RunningTrio]:
        return start_trio(data_dir, port_base, dev_time_control=dev_time_control, auto_approve=auto_approve_cmk,
                          mutual_tls=not insecure, metrics=True, env=environ)  # fmt: skip

    def started(trio: RunningTrio) -> None:
        announcement = trio.announcement(show_secret=not hide_operator_secret)
        _write_endpoints(data_dir, announcement)
        announce(announcement, state.output)

    _serve("trio", os.environ.get("CMK_LOG_LEVEL", "INFO"), start, started, "stopping", serves_https=not insecure)


def _write_endpoints(data_dir: Path, announcement: Announcement) -> None:
    """Where the trio listens, for `cmk login` typed beside it (cli.endpoints_file)."""
    from cmk_trio.cli.endpoints_file import TrioEndpoints

    tls_dir = str(announcement.tls_dir.absolute()) if announcement.tls_dir is not None else ""
    TrioEndpoints(dict(announcement.services), tls_dir).write(data_dir)


@command(serve, "keyvault", queryable=False, cls=SettingsCommand, settings=lambda: _config("keyvault"))
def serve_keyvault(state: State, **flags: str | bool | None) -> None:
    """The key vault service (vaults, keys, wrap/unwrap, audit), trusting an identity service."""
    from cmk_trio.keyvault.config import KeyVaultConfig
    from cmk_trio.keyvault.server import build_server

    config = _load(KeyVaultConfig, flags)
    started = _listening("keyvault", state.output)
    _serve(
        "keyvault",
        config.log_level,
        lambda: build_server(config),
        started,
        "keyvault: stopping",
        serves_https=config.http_port is not None and config.tls.enabled,
    )


@command(serve, "speech", queryable=False, cls=SettingsCommand, settings=lambda: _config("speech"))
def serve_speech(state: State, **flags: str | bool | None) -> None:
    """The speech resource store (applications and LUIS keys under envelope encryption)."""
    from cmk_trio.speech.config import SpeechConfig
    from cmk_trio.speech.server import build_server

    config = _load(SpeechConfig, flags)
    started = _listening("speech", state.output)
    _serve("speech", config.log_level, lambda: build_server(config), started, "speech: stopping")


@command(serve, "proxy", queryable=False)
@click.option("--host", envvar="CMK_PROXY_HOST", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", envvar="CMK_PROXY_PORT", type=click.IntRange(0, 65535), default=50056, show_default=True,
              help="port; 0 picks a free one")  # fmt: skip
@click.option("--route", "routes", multiple=True, envvar="CMK_PROXY_ROUTES", metavar="NAME=HOST:PORT",
              help="tunnel CONNECTs to NAME:443 to the door at HOST:PORT (repeatable; NAME a host name or *.suffix;"
                   " the variable takes them separated by spaces)")  # fmt: skip
@click.option("--log-level", envvar="CMK_LOG_LEVEL", default="INFO", show_default=True,
              help="DEBUG, INFO, WARNING or ERROR")  # fmt: skip
def serve_proxy(state: State, host: str, port: int, routes: tuple[str, ...], log_level: str) -> None:
    """The CONNECT proxy alone: Azure's default names tunnelled to the HTTPS doors.

    As `cmk up` serves it beside the trio, for services that run apart (compose):

    \b
        cmk serve proxy --route login.microsoftonline.com=identity:50054 --route '*.vault.azure.net=keyvault:50055'

    It tunnels CONNECTs to port 443 of those names only, refuses everything else, and takes the
    connection limits every listener takes (CMK_MAX_CONNECTIONS, CMK_MAX_CONNECTIONS_PER_PEER,
    CMK_HEAD_TIMEOUT_SECONDS, CMK_IDLE_TIMEOUT_SECONDS). `GET /health` answers SERVING while every
    door accepts connections (python -m cmk_trio.rpckit.probe --proxy PORT asks it)."""
    from cmk_trio.rpckit.config import ConfigError
    from cmk_trio.rpckit.connect_proxy import RunningProxy, parse_routes

    try:
        routed = parse_routes(routes)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc

    async def start() -> RunningProxy:
        from cmk_trio.rpckit.connect_proxy import start_proxy
        from cmk_trio.rpckit.listeners import ConnectionLimits

        limits = ConnectionLimits.from_env(os.environ)  # (after the descriptor limit is raised: its share)
        try:
            return await start_proxy(routed, host, port, limits)
        except OSError as exc:
            raise StartupError(f"cannot listen on {host}:{port}: the port is in use, or the address is not this"
                               f" machine's ({exc.strerror or exc})") from None  # fmt: skip

    def started(proxy: RunningProxy) -> None:
        if state.output == "json":
            click.echo(json.dumps({"service": "proxy", "endpoint": f"{host}:{proxy.port}", "proxy": proxy.url,
                                   "routes": routed}))  # fmt: skip
        else:
            click.echo(f"proxy listening on {host}:{proxy.port}")
            for name, door in routed.items():
                click.echo(f"  {name}:443 -> {door}")
            click.echo(f"  export HTTPS_PROXY={proxy.url} NO_PROXY=127.0.0.1,localhost (and the doors' CA)")
        sys.stdout.flush()

    _serve("proxy", log_level, start, started, "proxy: stopping")


@command(serve, "arm", queryable=False)
@click.option("--host", envvar="CMK_ARM_HOST", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", envvar="CMK_ARM_PORT", type=click.IntRange(0, 65535), default=50057, show_default=True,
              help="port; 0 picks a free one")  # fmt: skip
@click.option("--identity-endpoint", envvar="CMK_IDENTITY_ENDPOINT", required=True,
              help="the identity service's host:port")  # fmt: skip
@click.option("--keyvault-endpoint", envvar="CMK_KEYVAULT_ENDPOINT", required=True,
              help="the key vault's host:port")  # fmt: skip
@click.option("--speech-endpoint", envvar="CMK_SPEECH_ENDPOINT", required=True,
              help="the speech service's host:port")  # fmt: skip
@click.option("--login-endpoint", envvar="CMK_ARM_LOGIN_ENDPOINT", required=True,
              help="identity's HTTPS door as clients reach it (the authority /metadata/endpoints names)")  # fmt: skip
@click.option("--vault-dns-suffix", envvar="CMK_VAULT_DNS_SUFFIX", default="vault.azure.net", show_default=True,
              help="the host name suffix of vault URIs")  # fmt: skip
@click.option("--tls-cert", envvar="CMK_TLS_CERT", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              required=True, help="the door's certificate (PEM), its client one to the services too")  # fmt: skip
@click.option("--tls-key", envvar="CMK_TLS_KEY", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              required=True, help="its private key (PEM)")  # fmt: skip
@click.option("--tls-client-ca", envvar="CMK_TLS_CLIENT_CA", default=None,
              type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="the CA of the services' certificates (mutual TLS to them)")  # fmt: skip
@click.option("--log-level", envvar="CMK_LOG_LEVEL", default="INFO", show_default=True,
              help="DEBUG, INFO, WARNING or ERROR")  # fmt: skip
def serve_arm(state: State, host: str, port: int, identity_endpoint: str, keyvault_endpoint: str,
              speech_endpoint: str, login_endpoint: str, vault_dns_suffix: str, tls_cert: Path, tls_key: Path,
              tls_client_ca: Path | None, log_level: str) -> None:  # fmt: skip
    """Azure Resource Manager's door alone (HTTPS), calling the three services with each
    caller's token, as `cmk up` serves it beside the trio:

    \b
        cmk serve arm --identity-endpoint identity:50051 --keyvault-endpoint keyvault:50052 \\
          --speech-endpoint speech:50053 --login-endpoint https://localhost:50054 \\
          --tls-cert arm.crt --tls-key arm.key --tls-client-ca ca.crt

    It holds no data and decides nothing itself: every request is a call of the service that
    owns the data. Its connections take the limits every listener takes (CMK_MAX_CONNECTIONS, ...)."""
    from cmk_trio.arm.resources import Cloud
    from cmk_trio.arm.server import RunningArm, start_arm
    from cmk_trio.client.channel import ChannelTls
    from cmk_trio.rpckit.config import TlsConfig

    if not login_endpoint.startswith("https://"):
        raise click.BadParameter("an https:// URL", param_hint="--login-endpoint")

    async def start() -> RunningArm:
        from cmk_trio.rpckit.listeners import ConnectionLimits

        channel_tls = ChannelTls(tls_client_ca, tls_cert, tls_key) if tls_client_ca else None
        endpoints = {"identity": identity_endpoint, "keyvault": keyvault_endpoint, "speech": speech_endpoint}
        try:
            return await start_arm(
                host=host, port=port, tls=TlsConfig(cert_file=tls_cert, key_file=tls_key), endpoints=endpoints,
                channel_tls=channel_tls, cloud=Cloud("CmkTrio", login_endpoint, vault_dns_suffix),
                limits=ConnectionLimits.from_env(os.environ),
            )  # fmt: skip
        except OSError as exc:
            raise StartupError(f"cannot listen on {host}:{port}: the port is in use, or the address is not this"
                               f" machine's ({exc.strerror or exc})") from None  # fmt: skip

    def started(arm: RunningArm) -> None:
        if state.output == "json":
            click.echo(json.dumps({"service": "arm", "http": arm.url, "endpoints": {
                "identity": identity_endpoint, "keyvault": keyvault_endpoint, "speech": speech_endpoint}}))  # fmt: skip
        else:
            click.echo(f"arm (Azure Resource Manager) listening on {arm.url}")
        sys.stdout.flush()

    _serve("arm", log_level, start, started, "arm: stopping", serves_https=True)


def _listening(name: str, output: str) -> Callable[[Served], None]:
    """The banner of the key vault or speech alone: where it listens."""

    def started(server: Served) -> None:
        metrics = {name: server.metrics_url} if server.metrics_url else {}
        if output == "json":
            click.echo(json.dumps({"service": name, "endpoint": server.endpoint, "metrics": metrics,
                                   "http": server.http_url}))  # fmt: skip
        else:
            from cmk_trio.rpckit.process import listening

            for line in listening(name, server.endpoint, metrics.get(name), server.http_url):
                click.echo(line)
        sys.stdout.flush()

    return started


def _refuse_start(name: str, refusal: StartupError) -> NoReturn:
    """What a service that refuses to start says (launcher.serve): one line, exit 3."""
    from cmk_trio.rpckit.process import STARTUP_REFUSED

    click.echo(f"{name}: cannot start: {refusal}", err=True)
    raise SystemExit(STARTUP_REFUSED)


def _serve(
    name: str,
    log_level: str,
    start: Callable[[], Awaitable[S]],
    started: Callable[[S], None],
    stopping: str,
    *,
    serves_https: bool = False,
) -> None:
    """Serve until SIGTERM or SIGINT (on uvloop where there is one, unless the process serves
    HTTPS: see rpckit.server.run), printing `stopping` on standard error when told to stop."""
    from cmk_trio.rpckit.process import serve_until_stopped
    from cmk_trio.rpckit.server import run

    run(
        lambda: serve_until_stopped(name, log_level, start, started, lambda: click.echo(stopping, err=True)),
        serves_https=serves_https,
    )


@command(None, "health")
@click.option("--endpoint", required=True, help="host:port")
@click.option("--service", default="", help="service name; empty means the whole server")
async def health(state: State, endpoint: str, service: str) -> None:
    """Ask a server the standard gRPC health question; exit 0 only if SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    channel = state.dial(endpoint)
    try:
        stub: Any = health_pb2_grpc.HealthStub(channel)  # the stub's methods are set at run time
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    except grpc.aio.AioRpcError as exc:
        status = f"UNREACHABLE ({exc.code().name})"
    finally:
        await channel.close()
    emit(state.output, {"endpoint": endpoint, "service": service, "status": status})
    if status != "SERVING":
        sys.exit(1)


@command(None, "certs")
@click.option("--dir", "directory", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--host", "hosts", multiple=True, default=("localhost",), show_default=True,
              help="a DNS name the services are reached by (repeatable; each service's own name is added)")  # fmt: skip
@click.option("--ca-key-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="keep the CA's private key here instead of beside the certificates [--dir]")  # fmt: skip
@click.option("--issue-to", "issue_to", multiple=True, metavar="NAME=DIR",
              help="also copy NAME's certificate and key, with the CA's certificate, into DIR (repeatable):"
                   " each service gets its own and no other's")  # fmt: skip
def certs(
    state: State, directory: Path, hosts: tuple[str, ...], ca_key_dir: Path | None, issue_to: tuple[str, ...]
) -> None:
    """Create a development CA and certificates for identity, keyvault, speech, Azure Resource
    Manager's door (arm) and the CLI (existing ones are kept)."""
    from cmk_trio.rpckit.devca import SERVICES, ensure_dev_pki, issue_copy

    names = (*SERVICES, "arm", "cli")
    targets: list[tuple[str, Path]] = []
    taken = {directory.resolve(), *([ca_key_dir.resolve()] if ca_key_dir else [])}
    for item in issue_to:
        name, sep, target = item.partition("=")
        if not sep or name not in names or not target:
            raise click.BadParameter(f"expected NAME=DIR with NAME one of {', '.join(names)}", param_hint="--issue-to")
        where = Path(target).resolve()
        if where in taken or (where.exists() and not where.is_dir()):
            raise click.BadParameter(f"{target}: each name needs a directory of its own, apart from --dir and "
                                     "--ca-key-dir", param_hint="--issue-to")  # fmt: skip
        taken.add(where)
        targets.append((name, Path(target)))
    try:
        pki = ensure_dev_pki(directory, hosts=hosts, ca_key_dir=ca_key_dir)
        for name, destination in targets:
            issue_copy(pki, name, destination)
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    files = {name: str(pki.identity(name).cert_file) for name in names}
    emit(state.output, {"ca": str(pki.ca_file), **files})
