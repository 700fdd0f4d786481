"""`cmk serve identity|keyvault|speech`, `cmk up`, `cmk health` and `cmk certs`: starting the
services and checking on them. The starting itself is cmk_trio.launcher's; what is printed
(the banners) is the CLI's."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from cmk_trio.cli.common import State, command
from cmk_trio.cli.output import emit
from cmk_trio.rpckit.datadir import StartupError

if TYPE_CHECKING:
    from cmk_trio.launcher.announcement import Announcement
    from cmk_trio.launcher.serve import Stoppable

S = TypeVar("S", bound="Stoppable")

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


METRICS_HOST = click.option(
    "--metrics-host",
    envvar="CMK_METRICS_HOST",
    default=None,
    help="address metrics listen on (plain HTTP) [127.0.0.1]; expose them only on purpose",
)
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


@command(serve, "identity", queryable=False)
@data_dir_option
@click.option("--host", envvar="CMK_IDENTITY_HOST", default=None, help="address to listen on [127.0.0.1]")
@click.option("--port", type=int, envvar="CMK_IDENTITY_PORT", default=None, help="port; 0 picks a free one [50051]")
@click.option("--issuer-base", envvar="CMK_ISSUER_BASE", default=None)
@click.option("--tls-cert", type=click.Path(path_type=Path, exists=True), envvar="CMK_TLS_CERT")
@click.option("--tls-key", type=click.Path(path_type=Path, exists=True), envvar="CMK_TLS_KEY")
@click.option(
    "--tls-client-ca",
    type=click.Path(path_type=Path, exists=True),
    envvar="CMK_TLS_CLIENT_CA",
    help="require client certificates from this CA (mutual TLS)",
)
@click.option("--metrics-port", type=int, envvar="CMK_IDENTITY_METRICS_PORT", default=None,
              help="serve Prometheus metrics on this port (0: a free one)")  # fmt: skip
@click.option("--http-port", type=int, envvar="CMK_IDENTITY_HTTP_PORT", default=None,
              help="serve OpenID Connect discovery, the JWKS and the OAuth 2.0 token endpoint over HTTP(S)"
                   " on this port (0: a free one)")  # fmt: skip
@click.option("--http-public-url", envvar="CMK_IDENTITY_HTTP_PUBLIC_URL", default=None,
              help="the base URL clients reach those endpoints at, named in the discovery document"
                   " [the address they listen on]")  # fmt: skip
@METRICS_HOST
@DATABASE_URL
@click.option("--log-level", envvar="CMK_LOG_LEVEL", default=None)
@click.option("--dev-time-control", is_flag=True, help="let the operator move the clock (tests only)")
@HIDE_SECRET
def serve_identity(
    state: State,
    data_dir: Path,
    host: str | None,
    port: int | None,
    issuer_base: str | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_client_ca: Path | None,
    metrics_port: int | None,
    http_port: int | None,
    http_public_url: str | None,
    metrics_host: str | None,
    database_url: str | None,
    log_level: str | None,
    dev_time_control: bool,
    hide_operator_secret: bool,
) -> None:
    """The identity service (directory, tokens, signing keys, events)."""
    from cmk_trio.identity.config import IdentityConfig
    from cmk_trio.identity.server import IdentityServer, build_server
    from cmk_trio.launcher.announcement import Announcement
    from cmk_trio.rpckit.config import ConfigError, TlsConfig

    try:
        tls = TlsConfig(tls_cert, tls_key, tls_client_ca) if tls_cert or tls_key else None
        config = IdentityConfig.from_env(
            os.environ,
            data_dir=data_dir,
            host=host,
            port=port,
            issuer_base=issuer_base,
            tls=tls,
            log_level=log_level,
            dev_time_control=dev_time_control or None,
            metrics_port=metrics_port,
            http_port=http_port,
            http_public_url=http_public_url and http_public_url.rstrip("/"),
            metrics_host=metrics_host,
            database_url=database_url,
        )
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc

    def started(server: IdentityServer) -> None:
        metrics = {}
        if server.metrics_port is not None:
            metrics["identity"] = f"http://{config.metrics_host}:{server.metrics_port}/metrics"
        announce(Announcement.of(server, metrics=metrics, show_secret=not hide_operator_secret), state.output)

    _serve("identity", config.log_level, lambda: build_server(config), started, "identity: stopping")


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
    from cmk_trio.launcher.announcement import Announcement

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
            announce(Announcement.of_replicas(running, show_secret=not hide_operator_secret), state.output)

        _serve("replicas", os.environ.get("CMK_LOG_LEVEL", "INFO"), start_many, started_many, "stopping")
        return

    from cmk_trio.launcher.trio import RunningTrio, start_trio

    environ = {**os.environ, "CMK_DATABASE_URL": database_url} if database_url else None

    def start() -> Awaitable[RunningTrio]:
        return start_trio(data_dir, port_base, dev_time_control=dev_time_control, auto_approve=auto_approve_cmk,
                          mutual_tls=not insecure, metrics=True, env=environ)  # fmt: skip

    def started(trio: RunningTrio) -> None:
        announce(Announcement.of_trio(trio, show_secret=not hide_operator_secret), state.output)

    _serve("trio", os.environ.get("CMK_LOG_LEVEL", "INFO"), start, started, "stopping")


@command(serve, "keyvault", queryable=False)
@data_dir_option
@click.option("--host", envvar="CMK_KEYVAULT_HOST", default=None, help="address to listen on [127.0.0.1]")
@click.option("--port", type=int, envvar="CMK_KEYVAULT_PORT", default=None, help="port; 0 picks a free one [50052]")
@click.option(
    "--identity-endpoint", envvar="CMK_IDENTITY_ENDPOINT", default=None, help="the identity service host:port"
)
@click.option(
    "--credentials-file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    envvar="CMK_KEYVAULT_CREDENTIALS_FILE",
    help="JSON with tenant_id, client_id, client_secret of the key vault's platform principal",
)
@click.option("--vault-dns-suffix", envvar="CMK_VAULT_DNS_SUFFIX", default=None, help="[vault.azure.net]")
@click.option("--tls-cert", type=click.Path(path_type=Path, exists=True), envvar="CMK_TLS_CERT")
@click.option("--tls-key", type=click.Path(path_type=Path, exists=True), envvar="CMK_TLS_KEY")
@click.option("--tls-client-ca", type=click.Path(path_type=Path, exists=True), envvar="CMK_TLS_CLIENT_CA")
@click.option("--metrics-port", type=int, envvar="CMK_KEYVAULT_METRICS_PORT", default=None,
              help="serve Prometheus metrics on this port (0: a free one)")  # fmt: skip
@METRICS_HOST
@DATABASE_URL
@click.option("--log-level", envvar="CMK_LOG_LEVEL", default=None)
@click.option("--dev-time-control", is_flag=True, help="let the operator move the clock (tests only)")
def serve_keyvault(
    state: State,
    data_dir: Path,
    host: str | None,
    port: int | None,
    identity_endpoint: str | None,
    credentials_file: Path | None,
    vault_dns_suffix: str | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_client_ca: Path | None,
    metrics_port: int | None,
    metrics_host: str | None,
    database_url: str | None,
    log_level: str | None,
    dev_time_control: bool,
) -> None:
    """The key vault service (vaults, keys, wrap/unwrap, audit), trusting an identity service."""
    from cmk_trio.client.identity import ClientCredentials
    from cmk_trio.keyvault.config import KeyVaultConfig
    from cmk_trio.rpckit.config import ConfigError, TlsConfig

    try:
        tls = TlsConfig(tls_cert, tls_key, tls_client_ca) if tls_cert or tls_key else None
        config = KeyVaultConfig.from_env(
            os.environ,
            data_dir=data_dir,
            host=host,
            port=port,
            identity_endpoint=identity_endpoint,
            credentials=ClientCredentials.from_file(credentials_file) if credentials_file else None,
            vault_dns_suffix=vault_dns_suffix,
            tls=tls,
            log_level=log_level,
            dev_time_control=dev_time_control or None,
            metrics_port=metrics_port,
            metrics_host=metrics_host,
            database_url=database_url,
        )
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    except StartupError as refusal:  # its credentials file (rpckit.keyfiles)
        _refuse_start("keyvault", refusal)
    from cmk_trio.keyvault.server import build_server

    started = _listening("keyvault", state.output)
    _serve("keyvault", config.log_level, lambda: build_server(config), started, "keyvault: stopping")


@command(serve, "speech", queryable=False)
@data_dir_option
@click.option("--host", envvar="CMK_SPEECH_HOST", default=None, help="address to listen on [127.0.0.1]")
@click.option("--port", type=int, envvar="CMK_SPEECH_PORT", default=None, help="port; 0 picks a free one [50053]")
@click.option("--identity-endpoint", envvar="CMK_IDENTITY_ENDPOINT", default=None, help="the identity service")
@click.option("--keyvault-endpoint", envvar="CMK_KEYVAULT_ENDPOINT", default=None, help="the key vault service")
@click.option(
    "--credentials-file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    envvar="CMK_SPEECH_CREDENTIALS_FILE",
    help="JSON with tenant_id, client_id, client_secret of the speech platform principal",
)
@click.option("--auto-approve-cmk", is_flag=True, help="approve CMK requests at once (development only)")
@click.option("--tls-cert", type=click.Path(path_type=Path, exists=True), envvar="CMK_TLS_CERT")
@click.option("--tls-key", type=click.Path(path_type=Path, exists=True), envvar="CMK_TLS_KEY")
@click.option("--tls-client-ca", type=click.Path(path_type=Path, exists=True), envvar="CMK_TLS_CLIENT_CA")
@click.option("--metrics-port", type=int, envvar="CMK_SPEECH_METRICS_PORT", default=None,
              help="serve Prometheus metrics on this port (0: a free one)")  # fmt: skip
@METRICS_HOST
@DATABASE_URL
@click.option("--log-level", envvar="CMK_LOG_LEVEL", default=None)
@click.option("--dev-time-control", is_flag=True, help="let the operator move the clock (tests only)")
def serve_speech(
    state: State,
    data_dir: Path,
    host: str | None,
    port: int | None,
    identity_endpoint: str | None,
    keyvault_endpoint: str | None,
    credentials_file: Path | None,
    auto_approve_cmk: bool,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_client_ca: Path | None,
    metrics_port: int | None,
    metrics_host: str | None,
    database_url: str | None,
    log_level: str | None,
    dev_time_control: bool,
) -> None:
    """The speech resource store (applications and LUIS keys under envelope encryption)."""
    from cmk_trio.client.identity import ClientCredentials
    from cmk_trio.rpckit.config import ConfigError, TlsConfig
    from cmk_trio.speech.config import SpeechConfig

    try:
        tls = TlsConfig(tls_cert, tls_key, tls_client_ca) if tls_cert or tls_key else None
        config = SpeechConfig.from_env(
            os.environ,
            data_dir=data_dir,
            host=host,
            port=port,
            identity_endpoint=identity_endpoint,
            keyvault_endpoint=keyvault_endpoint,
            dev_time_control=dev_time_control or None,
            credentials=ClientCredentials.from_file(credentials_file) if credentials_file else None,
            auto_approve_cmk=auto_approve_cmk or None,
            tls=tls,
            log_level=log_level,
            metrics_port=metrics_port,
            metrics_host=metrics_host,
            database_url=database_url,
        )
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    except StartupError as refusal:  # its credentials file (rpckit.keyfiles)
        _refuse_start("speech", refusal)
    from cmk_trio.speech.server import build_server

    started = _listening("speech", state.output)
    _serve("speech", config.log_level, lambda: build_server(config), started, "speech: stopping")


def _listening(name: str, output: str) -> Callable[[Any], None]:
    """The banner of the key vault or speech alone: where it listens."""

    def started(server: Any) -> None:
        metrics = {}
        if server.metrics_port is not None:
            metrics[name] = f"http://{server.config.metrics_host}:{server.metrics_port}/metrics"
        if output == "json":
            click.echo(json.dumps({"service": name, "endpoint": server.endpoint, "metrics": metrics}))
        else:
            click.echo(f"{name} listening on {server.endpoint}")
            for url in metrics.values():
                click.echo(f"{name} metrics at {url}")
        sys.stdout.flush()

    return started


def _refuse_start(name: str, refusal: StartupError) -> NoReturn:
    """What a service that refuses to start says (launcher.serve): one line, exit 3."""
    from cmk_trio.launcher.serve import STARTUP_REFUSED

    click.echo(f"{name}: cannot start: {refusal}", err=True)
    raise SystemExit(STARTUP_REFUSED)


def _serve(
    name: str, log_level: str, start: Callable[[], Awaitable[S]], started: Callable[[S], None], stopping: str
) -> None:
    """Serve until SIGTERM or SIGINT (on uvloop where there is one), printing `stopping` on
    standard error when told to stop."""
    from cmk_trio.launcher.serve import serve_until_stopped
    from cmk_trio.rpckit.server import run

    run(lambda: serve_until_stopped(name, log_level, start, started, lambda: click.echo(stopping, err=True)))


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
    """Create a development CA and certificates for identity, keyvault, speech and the CLI
    (existing ones are kept)."""
    from cmk_trio.rpckit.devca import SERVICES, ensure_dev_pki, issue_copy

    names = (*SERVICES, "cli")
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
