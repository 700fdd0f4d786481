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

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cmk_trio.cli import keyvault_commands, speech_commands
from cmk_trio.cli.common import (
    State,
    anonymous,
    output_option,
    pass_state,
    read_operator_file,
    run_async,
    session,
)
from cmk_trio.cli.output import emit, emit_messages, to_dict
from cmk_trio.cli.profile import Profile
from cmk_trio.client.identity import ClientCredentials, IdentityClient
from cmk_trio.proto.identity.v1 import resources_pb2 as res
from cmk_trio.rpckit import audiences

F = TypeVar("F", bound=Callable[..., Any])

PRINCIPAL_COLUMNS = ("object_id", "kind", "display_name", "client_id", "enabled", "tenant_admin")
ROLE_COLUMNS = ("role_assignment_id", "principal_id", "role", "scope")
KINDS = {"user": res.USER, "service-principal": res.SERVICE_PRINCIPAL, "managed-identity": res.MANAGED_IDENTITY}
ROLES = {"reader": res.READER, "contributor": res.CONTRIBUTOR, "owner": res.OWNER}
ACTIONS = {"read": res.READ, "write": res.WRITE, "manage-access": res.MANAGE_ACCESS}
AUDIENCES = {
    "directory": audiences.DIRECTORY,
    "management": audiences.MANAGEMENT,
    "vault": audiences.VAULT,
    "speech": audiences.SPEECH,
}


@click.group(help=__doc__)
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
    ctx.obj = State(output, profile, endpoint, keyvault_endpoint, speech_endpoint, tls_dir)


# --- serving -----------------------------------------------------------------------------


@cli.group()
def serve() -> None:
    """Start one service in the foreground."""


@serve.command("identity")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    envvar="CMK_DATA_DIR",
    default=Path(".cmk"),
    show_default=True,
    help="where the database, key files and credentials are kept",
)
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
@click.option("--log-level", envvar="CMK_LOG_LEVEL", default=None)
@click.option("--dev-time-control", is_flag=True, help="let the operator move the clock (tests only)")
@output_option
@pass_state
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
    log_level: str | None,
    dev_time_control: bool,
) -> None:
    """The identity service (directory, tokens, signing keys, events)."""
    import os

    from cmk_trio.identity.config import IdentityConfig
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
        )
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    from cmk_trio.rpckit.server import run

    run(lambda: _serve_identity(config, state.output))


async def _serve_identity(config: Any, output: str) -> None:
    from cmk_trio.identity.server import IdentityServer, build_server
    from cmk_trio.launcher.announcement import Announcement
    from cmk_trio.launcher.serve import serve_until_stopped

    def started(server: IdentityServer) -> None:
        announce(Announcement.of(server), output)

    await serve_until_stopped("identity", config.log_level, lambda: build_server(config), started,
                              lambda: click.echo("identity: stopping", err=True))  # fmt: skip


def announce(announcement: Any, output: str) -> None:
    """Print what a start announces: one JSON line (which scripts and tests wait for) or
    lines for people, flushed at once because a pipe would otherwise hold them back."""
    if output == "json":
        click.echo(announcement.to_json())
    else:
        for line in announcement.lines():
            click.echo(line)
    sys.stdout.flush()


@cli.command()
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    envvar="CMK_DATA_DIR",
    default=Path(".cmk"),
    show_default=True,
    help="where the database, key files and credentials are kept",
)
@click.option("--port-base", type=int, default=50050, show_default=True, help="identity on +1, key vault +2, speech +3")
@click.option("--dev-time-control", is_flag=True, help="let the operator move the services' clocks (tests only)")
@click.option("--auto-approve-cmk", is_flag=True, help="approve CMK requests at once (development only)")
@click.option("--insecure", is_flag=True, help="plain TCP instead of mutual TLS (loopback only)")
@output_option
@pass_state
def up(
    state: State, data_dir: Path, port_base: int, dev_time_control: bool, auto_approve_cmk: bool, insecure: bool
) -> None:
    """Start the services in one process, wired to each other, with their data in --data-dir.

    Identity, the key vault and speech; a second `cmk up` on the same directory resumes with
    all data intact.
    """
    import os

    from cmk_trio.launcher.announcement import Announcement
    from cmk_trio.launcher.serve import serve_until_stopped
    from cmk_trio.launcher.trio import RunningTrio, start_trio
    from cmk_trio.rpckit.server import run

    if insecure:
        click.echo("warning: --insecure: the services talk plain TCP on loopback, without TLS", err=True)

    def start() -> Awaitable[RunningTrio]:
        return start_trio(data_dir, port_base, dev_time_control=dev_time_control, auto_approve=auto_approve_cmk,
                          mutual_tls=not insecure, metrics=True)  # fmt: skip

    def started(trio: RunningTrio) -> None:
        announce(Announcement.of_trio(trio), state.output)

    log_level = os.environ.get("CMK_LOG_LEVEL", "INFO")
    run(lambda: serve_until_stopped("trio", log_level, start, started, lambda: click.echo("stopping", err=True)))


@serve.command("keyvault")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    envvar="CMK_DATA_DIR",
    default=Path(".cmk"),
    show_default=True,
    help="where the database, key files and credentials are kept",
)
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
@click.option("--log-level", envvar="CMK_LOG_LEVEL", default=None)
@click.option("--dev-time-control", is_flag=True, help="let the operator move the clock (tests only)")
@output_option
@pass_state
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
    log_level: str | None,
    dev_time_control: bool,
) -> None:
    """The key vault service (vaults, keys, wrap/unwrap, audit), trusting an identity service."""
    import os

    from cmk_trio.client.identity import ClientCredentials
    from cmk_trio.keyvault.config import KeyVaultConfig
    from cmk_trio.rpckit.config import ConfigError, TlsConfig
    from cmk_trio.rpckit.server import run

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
        )
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    from cmk_trio.keyvault.server import build_server

    run(lambda: _serve_one("keyvault", build_server, config, state.output))


@serve.command("speech")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    envvar="CMK_DATA_DIR",
    default=Path(".cmk"),
    show_default=True,
    help="where the database, key files and credentials are kept",
)
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
@click.option("--log-level", envvar="CMK_LOG_LEVEL", default=None)
@output_option
@pass_state
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
    log_level: str | None,
) -> None:
    """The speech resource store (applications and LUIS keys under envelope encryption)."""
    import os

    from cmk_trio.client.identity import ClientCredentials
    from cmk_trio.rpckit.config import ConfigError, TlsConfig
    from cmk_trio.rpckit.server import run
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
            credentials=ClientCredentials.from_file(credentials_file) if credentials_file else None,
            auto_approve_cmk=auto_approve_cmk or None,
            tls=tls,
            log_level=log_level,
            metrics_port=metrics_port,
        )
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    from cmk_trio.speech.server import build_server

    run(lambda: _serve_one("speech", build_server, config, state.output))


async def _serve_one(name: str, build: Callable[[Any], Awaitable[Any]], config: Any, output: str) -> None:
    """Run one service until SIGTERM/SIGINT, announcing where it listens."""
    from cmk_trio.launcher.serve import serve_until_stopped

    def started(server: Any) -> None:
        if output == "json":
            click.echo(json.dumps({"service": name, "endpoint": server.endpoint}))
        else:
            click.echo(f"{name} listening on {server.endpoint}")
        sys.stdout.flush()

    await serve_until_stopped(name, config.log_level, lambda: build(config), started,
                              lambda: click.echo(f"{name}: stopping", err=True))  # fmt: skip


@cli.command()
@click.option("--endpoint", required=True, help="host:port")
@click.option("--service", default="", help="service name; empty means the whole server")
@output_option
@pass_state
@run_async
async def health(state: State, endpoint: str, service: str) -> None:
    """Ask a server the standard gRPC health question; exit 0 only if SERVING."""

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


# --- signing in ----------------------------------------------------------------------------


@cli.command()
@click.option("--endpoint", required=True, help="identity endpoint host:port")
@click.option(
    "--operator-file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False, resolve_path=True),
    help="sign in as the operator from its credential file",
)
@click.option("--tenant", "tenant_id", help="tenant id (with --client-id)")
@click.option("--client-id")
@click.option("--client-secret", envvar="CMK_CLIENT_SECRET", help="prompted for if not given")
@click.option("--keyvault-endpoint", envvar="CMK_KEYVAULT_ENDPOINT", help="key vault endpoint host:port")
@click.option("--speech-endpoint", envvar="CMK_SPEECH_ENDPOINT", help="speech endpoint host:port")
@output_option
@pass_state
@run_async
async def login(
    state: State,
    endpoint: str,
    operator_file: Path | None,
    tenant_id: str | None,
    client_id: str | None,
    client_secret: str | None,
    keyvault_endpoint: str | None,
    speech_endpoint: str | None,
) -> None:
    """Sign in and keep the tokens in the profile file (mode 0600)."""
    if operator_file is not None:
        creds = read_operator_file(operator_file)
    else:
        if not tenant_id or not client_id:
            raise click.ClickException("give --operator-file, or --tenant and --client-id")
        secret = client_secret or click.prompt("client secret", hide_input=True)
        creds = ClientCredentials(tenant_id, client_id, secret)
    profile = Profile(
        identity_endpoint=endpoint,
        tenant_id=creds.tenant_id,
        client_id=creds.client_id,
        keyvault_endpoint=keyvault_endpoint or "",
        speech_endpoint=speech_endpoint or "",
        tls_dir=str(Path(state.tls_dir).absolute()) if state.tls_dir else "",
        operator_file=str(operator_file) if operator_file else "",
    )
    async with anonymous(state, endpoint) as client:
        # One token per audience, as a CLI keeps them: the secret itself is not kept.
        for audience in sorted(audiences.ALL):
            issued = await client.issue_token(creds, audience)
            profile.keep(audience, issued.access_token, issued.expire_time.seconds)
    profile.save(state.profile_path)
    emit(
        state.output,
        {
            "signed_in": True,
            "tenant_id": creds.tenant_id,
            "client_id": creds.client_id,
            "endpoint": endpoint,
            "profile": str(state.profile_path),
            "keyvault_endpoint": profile.keyvault_endpoint,
            "speech_endpoint": profile.speech_endpoint,
        },
    )


# --- tenants -------------------------------------------------------------------------------


@cli.group()
def tenant() -> None:
    """Tenants (directories)."""


@tenant.command("create")
@click.argument("display_name")
@output_option
@pass_state
@run_async
async def tenant_create(state: State, display_name: str) -> None:
    """Create a tenant (operator only)."""
    async with session(state) as c:
        emit(state.output, to_dict(await c.create_tenant(display_name)))


@tenant.command("get")
@click.argument("tenant_id")
@output_option
@pass_state
@run_async
async def tenant_get(state: State, tenant_id: str) -> None:
    """Show a tenant."""
    async with session(state) as c:
        emit(state.output, to_dict(await c.get_tenant(tenant_id)))


@tenant.command("list")
@click.option("--page-size", type=int, default=0)
@click.option("--page-token", default="")
@output_option
@pass_state
@run_async
async def tenant_list(state: State, page_size: int, page_token: str) -> None:
    """List tenants."""
    async with session(state) as c:
        page = await c.list_tenants(page_size, page_token)
    emit_messages(
        state.output, page.tenants, ("tenant_id", "display_name", "platform"), {"next_page_token": page.next_page_token}
    )


# --- subscriptions ---------------------------------------------------------------------------


@cli.group()
def subscription() -> None:
    """Subscriptions."""


@subscription.command("create")
@click.option("--tenant", "tenant_id", required=True)
@click.argument("display_name")
@output_option
@pass_state
@run_async
async def subscription_create(state: State, tenant_id: str, display_name: str) -> None:
    """Create a subscription in a tenant (operator only)."""
    async with session(state) as c:
        emit(state.output, to_dict(await c.create_subscription(tenant_id, display_name)))


@subscription.command("get")
@click.argument("subscription_id")
@output_option
@pass_state
@run_async
async def subscription_get(state: State, subscription_id: str) -> None:
    """Show a subscription."""
    async with session(state) as c:
        emit(state.output, to_dict(await c.get_subscription(subscription_id)))


@subscription.command("list")
@click.option("--tenant", "tenant_id", default="")
@click.option("--page-size", type=int, default=0)
@click.option("--page-token", default="")
@output_option
@pass_state
@run_async
async def subscription_list(state: State, tenant_id: str, page_size: int, page_token: str) -> None:
    """List subscriptions."""
    async with session(state) as c:
        page = await c.list_subscriptions(tenant_id, page_size, page_token)
    emit_messages(
        state.output,
        page.subscriptions,
        ("subscription_id", "tenant_id", "display_name"),
        {"next_page_token": page.next_page_token},
    )


@subscription.command("transfer")
@click.argument("subscription_id")
@click.option("--to", "target_tenant_id", required=True, help="the tenant to move it to")
@output_option
@pass_state
@run_async
async def subscription_transfer(state: State, subscription_id: str, target_tenant_id: str) -> None:
    """Move a subscription to another tenant (its role assignments are removed)."""
    async with session(state) as c:
        emit(state.output, to_dict(await c.transfer_subscription(subscription_id, target_tenant_id)))


# --- principals ------------------------------------------------------------------------------


@cli.group()
def principal() -> None:
    """Users, service principals and managed identities."""


@principal.command("create")
@click.option("--tenant", "tenant_id", required=True)
@click.option("--kind", type=click.Choice(["user", "service-principal"]), required=True)
@click.option("--admin", is_flag=True, help="make it a tenant administrator")
@click.option("--platform-service", default="", help="act as this platform service (operator only)")
@click.option("--with-secret", is_flag=True, help="also add a client secret and show it once")
@click.argument("display_name")
@output_option
@pass_state
@run_async
async def principal_create(
    state: State, tenant_id: str, kind: str, admin: bool, platform_service: str, with_secret: bool, display_name: str
) -> None:
    """Create a user or service principal."""
    async with session(state) as c:
        created = await c.create_principal(
            tenant_id, KINDS[kind], display_name, tenant_admin=admin, platform_service=platform_service
        )
        result = to_dict(created)
        if with_secret:
            added = await c.add_client_secret(tenant_id, created.object_id, "initial")
            result["client_secret"] = added.secret_value
            result["secret_id"] = added.secret.secret_id
    emit(state.output, result)


def _principal_command(name: str, help_text: str, action: Callable[[IdentityClient, str, str], Awaitable[Any]]) -> None:
    @principal.command(name, help=help_text)
    @click.argument("tenant_id")
    @click.argument("object_id")
    @output_option
    @pass_state
    @run_async
    async def command(state: State, tenant_id: str, object_id: str) -> None:
        async with session(state) as c:
            result = await action(c, tenant_id, object_id)
        emit(
            state.output,
            to_dict(result) if result is not None else {"deleted": f"tenants/{tenant_id}/principals/{object_id}"},
        )


_principal_command("get", "Show a principal.", lambda c, t, o: c.get_principal(t, o))
_principal_command("enable", "Enable a principal.", lambda c, t, o: c.enable_principal(t, o))
_principal_command(
    "disable",
    "Disable a principal: no new tokens, and its tokens are refused.",
    lambda c, t, o: c.disable_principal(t, o),
)
_principal_command("delete", "Delete a user or service principal.", lambda c, t, o: c.delete_principal(t, o))


@principal.command("list")
@click.argument("tenant_id")
@click.option("--kind", type=click.Choice(sorted(KINDS)), default=None)
@click.option("--page-size", type=int, default=0)
@click.option("--page-token", default="")
@output_option
@pass_state
@run_async
async def principal_list(state: State, tenant_id: str, kind: str | None, page_size: int, page_token: str) -> None:
    """List the principals of a tenant."""
    async with session(state) as c:
        page = await c.list_principals(tenant_id, KINDS[kind] if kind else 0, page_size, page_token)
    emit_messages(state.output, page.principals, PRINCIPAL_COLUMNS, {"next_page_token": page.next_page_token})


@principal.command("rename")
@click.argument("tenant_id")
@click.argument("object_id")
@click.argument("display_name")
@output_option
@pass_state
@run_async
async def principal_rename(state: State, tenant_id: str, object_id: str, display_name: str) -> None:
    """Change a principal's display name."""
    async with session(state) as c:
        emit(state.output, to_dict(await c.rename_principal(tenant_id, object_id, display_name)))


# --- secrets -----------------------------------------------------------------------------------


@cli.group()
def secret() -> None:
    """Client secrets (values are shown once, when added)."""


@secret.command("add")
@click.argument("tenant_id")
@click.argument("object_id")
@click.option("--name", "display_name", default="")
@click.option("--days", type=int, default=0, help="lifetime in days (default 365, at most 730)")
@output_option
@pass_state
@run_async
async def secret_add(state: State, tenant_id: str, object_id: str, display_name: str, days: int) -> None:
    """Add a client secret; its value is printed this once."""
    async with session(state) as c:
        added = await c.add_client_secret(tenant_id, object_id, display_name, days)
    emit(state.output, {**to_dict(added.secret), "client_id": added.client_id, "client_secret": added.secret_value})


@secret.command("list")
@click.argument("tenant_id")
@click.argument("object_id")
@output_option
@pass_state
@run_async
async def secret_list(state: State, tenant_id: str, object_id: str) -> None:
    """List a principal's client secrets (without values)."""
    async with session(state) as c:
        page = await c.list_client_secrets(tenant_id, object_id)
    emit_messages(
        state.output,
        page.secrets,
        ("secret_id", "display_name", "create_time", "expire_time"),
        {"next_page_token": page.next_page_token},
    )


@secret.command("delete")
@click.argument("tenant_id")
@click.argument("object_id")
@click.argument("secret_id")
@output_option
@pass_state
@run_async
async def secret_delete(state: State, tenant_id: str, object_id: str, secret_id: str) -> None:
    """Remove a client secret; it stops working at once."""
    async with session(state) as c:
        await c.delete_client_secret(tenant_id, object_id, secret_id)
    emit(state.output, {"deleted": secret_id})


# --- role assignments ----------------------------------------------------------------------------


@cli.group()
def role() -> None:
    """Role assignments (Owner, Contributor, Reader on a scope)."""


@role.command("assign")
@click.option("--principal", "principal_id", required=True, help="object id")
@click.option("--role", "role_name", type=click.Choice(sorted(ROLES)), required=True)
@click.option("--scope", required=True, help="/subscriptions/{id}[/resourceGroups/{rg}[/providers/...]]")
@output_option
@pass_state
@run_async
async def role_assign(state: State, principal_id: str, role_name: str, scope: str) -> None:
    """Grant a role on a scope."""
    async with session(state) as c:
        emit(state.output, to_dict(await c.create_role_assignment(principal_id, ROLES[role_name], scope)))


@role.command("list")
@click.option("--principal", "principal_id", default="")
@click.option("--scope", default="")
@click.option("--page-size", type=int, default=0)
@click.option("--page-token", default="")
@output_option
@pass_state
@run_async
async def role_list(state: State, principal_id: str, scope: str, page_size: int, page_token: str) -> None:
    """List role assignments."""
    async with session(state) as c:
        page = await c.list_role_assignments(principal_id, scope, page_size, page_token)
    emit_messages(state.output, page.role_assignments, ROLE_COLUMNS, {"next_page_token": page.next_page_token})


@role.command("get")
@click.argument("role_assignment_id")
@output_option
@pass_state
@run_async
async def role_get(state: State, role_assignment_id: str) -> None:
    """Show a role assignment."""
    async with session(state) as c:
        emit(state.output, to_dict(await c.get_role_assignment(role_assignment_id)))


@role.command("delete")
@click.argument("role_assignment_id")
@output_option
@pass_state
@run_async
async def role_delete(state: State, role_assignment_id: str) -> None:
    """Remove a role assignment."""
    async with session(state) as c:
        await c.delete_role_assignment(role_assignment_id)
    emit(state.output, {"deleted": role_assignment_id})


@role.command("check")
@click.option("--scope", required=True)
@click.option("--action", type=click.Choice(sorted(ACTIONS)), required=True)
@click.option("--principal", "principal_id", default="", help="object id (default: yourself)")
@output_option
@pass_state
@run_async
async def role_check(state: State, scope: str, action: str, principal_id: str) -> None:
    """Say whether a principal may do an action on a scope."""
    async with session(state) as c:
        emit(state.output, to_dict(await c.check_access(scope, ACTIONS[action], principal_id)))


# --- tokens and signing keys ---------------------------------------------------------------------


@cli.group()
def token() -> None:
    """Access tokens."""


@token.command("get")
@click.option("--audience", type=click.Choice(sorted(AUDIENCES)), default="directory", show_default=True)
@click.option("--operator-file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--tenant", "tenant_id")
@click.option("--client-id")
@click.option("--client-secret", envvar="CMK_CLIENT_SECRET")
@output_option
@pass_state
@run_async
async def token_get(
    state: State,
    audience: str,
    operator_file: Path | None,
    tenant_id: str | None,
    client_id: str | None,
    client_secret: str | None,
) -> None:
    """Obtain a token with client credentials (or the operator file) and print it."""
    if operator_file is not None:
        creds = read_operator_file(operator_file)
    elif tenant_id and client_id:
        creds = ClientCredentials(tenant_id, client_id, client_secret or click.prompt("client secret", hide_input=True))
    else:
        raise click.ClickException("give --operator-file, or --tenant, --client-id and --client-secret")
    async with anonymous(state) as c:
        issued = await c.issue_token(creds, AUDIENCES[audience])
    emit(state.output, to_dict(issued))


@cli.group("signing-key")
def signing_key() -> None:
    """The directory's token signing keys."""


@signing_key.command("list")
@output_option
@pass_state
@run_async
async def signing_key_list(state: State) -> None:
    """List the published signing keys."""
    async with anonymous(state) as c:
        keys = await c.list_signing_keys()
    emit_messages(state.output, keys, ("kid", "algorithm", "state", "create_time", "retire_time"), {})


@signing_key.command("rotate")
@output_option
@pass_state
@run_async
async def signing_key_rotate(state: State) -> None:
    """Make a new signing key active (operator only)."""
    async with session(state) as c:
        emit(state.output, to_dict(await c.rotate_signing_key()))


@cli.group()
def events() -> None:
    """The directory's event stream."""


@events.command("list")
@click.option("--after", type=int, default=0, help="start after this sequence number")
@click.option("--wait", type=float, default=0.5, show_default=True, help="seconds to wait for more")
@output_option
@pass_state
@run_async
async def events_list(state: State, after: int, wait: float) -> None:
    """Print the events after a sequence number (waiting --wait seconds for new ones)."""
    found: list[res.Event] = []
    async with session(state) as c:

        async def read() -> None:
            async for event in c.watch_events(after):
                found.append(event)

        try:
            await asyncio.wait_for(read(), wait)
        except TimeoutError:
            pass
    emit_messages(state.output, found, ("sequence", "type", "time", "tenant_id", "principal_id", "subscription_id"), {})


@cli.command()
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
@output_option
@pass_state
def demo(state: State, data_dir: Path, port_base: int, private: bool) -> None:
    """Walk the seed document against a running trio (or a private one); exit 0 only if every
    step behaved as the seed says."""
    from cmk_trio.rpckit.server import run

    run(lambda: _demo(state, data_dir, port_base, private))


async def _demo(state: State, data_dir: Path, port_base: int, private: bool) -> None:
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
            trio = await start_trio(data_dir, mutual_tls=True)
            endpoints = trio.endpoints
            state.tls_dir = str(trio.tls_dir)
        try:
            report = await run_demo(
                endpoints, read_operator_file(data_dir / "operator.json"), data_dir, say, dial=state.dial
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
    channel = state.dial(endpoint)
    try:
        stub: Any = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
    except grpc.aio.AioRpcError:
        return False
    finally:
        await channel.close()


@cli.command()
@click.option("--dir", "directory", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--host", "hosts", multiple=True, default=("localhost",), show_default=True,
              help="a DNS name the services are reached by (repeatable; each service's own name is added)")  # fmt: skip
@output_option
@pass_state
def certs(state: State, directory: Path, hosts: tuple[str, ...]) -> None:
    """Create a development CA and certificates for identity, keyvault, speech and the CLI
    (existing ones are kept)."""
    from cmk_trio.rpckit.devca import SERVICES, ensure_dev_pki

    pki = ensure_dev_pki(directory, hosts=hosts)
    files = {name: str(pki.identity(name).cert_file) for name in (*SERVICES, "cli")}
    emit(state.output, {"ca": str(pki.ca_file), **files})


@cli.command("platform-credentials")
@click.option("--service", type=click.Choice(["keyvault", "speech"]), required=True)
@click.option("--operator-file", type=click.Path(path_type=Path, exists=True, dir_okay=False), required=True)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True, help="credentials file to write")
@output_option
@pass_state
@run_async
async def platform_credentials(state: State, service: str, operator_file: Path, out: Path) -> None:
    """Make the platform principal a service runs as, and write its credentials (mode 0600).
    Does nothing if the file exists (so an init container can run it on every start)."""
    from cmk_trio.rpckit.keyfiles import write_private_file

    if out.exists():
        emit(state.output, {"service": service, "file": str(out), "created": False})
        return
    creds = read_operator_file(operator_file)
    async with anonymous(state) as anon:
        client = IdentityClient(anon.channel, creds)
        created = await client.create_principal(
            creds.tenant_id, res.SERVICE_PRINCIPAL, f"{service} service", platform_service=service
        )
        secret = await client.add_client_secret(creds.tenant_id, created.object_id, "platform", 730)
    content = {"tenant_id": creds.tenant_id, "client_id": secret.client_id, "client_secret": secret.secret_value}
    write_private_file(out, json.dumps(content, indent=2) + "\n")
    emit(state.output, {"service": service, "file": str(out), "created": True, "object_id": created.object_id})


@cli.command()
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
@output_option
@pass_state
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


async def _load(state: State, scenario_name: str, concurrency: int, rate: float | None, duration: float,
                request_count: int | None, warmup: float, mix: dict[str, int] | None, data_dir: Path,
                port_base: int, private: bool, allow_remote: bool, plot: Path | None,
                keep: bool) -> None:  # fmt: skip
    import ipaddress
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
                        for left in await prepared.clean_up():
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


@cli.group()
def clock() -> None:
    """Development time control (services started with --dev-time-control; operator only)."""


@clock.command("advance")
@click.option("--service", type=click.Choice(["identity", "keyvault"]), required=True)
@click.option("--seconds", type=int, default=0)
@click.option("--days", type=int, default=0)
@output_option
@pass_state
@run_async
async def clock_advance(state: State, service: str, seconds: int, days: int) -> None:
    """Move a service's clock forward, so retention, purge dates, rotation policies and token
    expiry can be exercised without waiting."""
    from cmk_trio.cli.common import load_profile, profile_tokens
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


keyvault_commands.register(cli)
speech_commands.register(cli)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `cmk` console script."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="cmk")
