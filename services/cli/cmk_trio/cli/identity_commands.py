"""The identity service's directory from a shell: tenants, subscriptions, principals,
client secrets, role assignments, the event stream, and the platform principals the key
vault and speech run as."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cmk_trio.cli.common import State, anonymous, command, read_operator_file, session
from cmk_trio.cli.output import emit, emit_messages, to_dict
from cmk_trio.proto.identity.v1 import resources_pb2 as res
from cmk_trio.rpckit.keyfiles import write_private_file

if TYPE_CHECKING:
    from google.protobuf.message import Message

    from cmk_trio.client.identity import IdentityClient

# Imports inside functions: the client (gRPC with it) is imported when a command runs, not
# when `cmk` starts, so that `cmk --help` loads none of it (see cli/common.py).

PRINCIPAL_COLUMNS = ("object_id", "kind", "display_name", "client_id", "enabled", "tenant_admin")
ROLE_COLUMNS = ("role_assignment_id", "principal_id", "role", "scope")
KINDS = {"user": res.USER, "service-principal": res.SERVICE_PRINCIPAL, "managed-identity": res.MANAGED_IDENTITY}
ROLES = {"reader": res.READER, "contributor": res.CONTRIBUTOR, "owner": res.OWNER}
ACTIONS = {"read": res.READ, "write": res.WRITE, "manage-access": res.MANAGE_ACCESS}


def register(cli: click.Group) -> None:
    """Add the directory's command groups and `platform-credentials` to `cmk`."""
    for made in (tenant, subscription, principal, secret, role, events, platform_credentials):
        cli.add_command(made)


# --- tenants -------------------------------------------------------------------------------


@click.group()
def tenant() -> None:
    """Tenants (directories)."""


@command(tenant, "create")
@click.argument("display_name")
async def tenant_create(state: State, display_name: str) -> None:
    """Create a tenant (operator only)."""
    async with session(state) as c:
        emit(state.output, to_dict(await c.create_tenant(display_name)))


@command(tenant, "show", aliases=("get",))
@click.argument("tenant_id")
async def tenant_get(state: State, tenant_id: str) -> None:
    """Show a tenant."""
    async with session(state) as c:
        emit(state.output, to_dict(await c.get_tenant(tenant_id)))


@command(tenant, "list")
@click.option("--page-size", type=int, default=0)
@click.option("--page-token", default="")
async def tenant_list(state: State, page_size: int, page_token: str) -> None:
    """List tenants."""
    async with session(state) as c:
        page = await c.list_tenants(page_size, page_token)
    emit_messages(
        state.output, page.tenants, ("tenant_id", "display_name", "platform"), {"next_page_token": page.next_page_token}
    )


# --- subscriptions ---------------------------------------------------------------------------


@click.group()
def subscription() -> None:
    """Subscriptions."""


@command(subscription, "create")
@click.option("--tenant", "tenant_id", required=True)
@click.argument("display_name")
async def subscription_create(state: State, tenant_id: str, display_name: str) -> None:
    """Create a subscription in a tenant (operator only)."""
    async with session(state) as c:
        emit(state.output, to_dict(await c.create_subscription(tenant_id, display_name)))


@command(subscription, "show", aliases=("get",))
@click.argument("subscription_id")
async def subscription_get(state: State, subscription_id: str) -> None:
    """Show a subscription."""
    async with session(state) as c:
        emit(state.output, to_dict(await c.get_subscription(subscription_id)))


@command(subscription, "list")
@click.option("--tenant", "tenant_id", default="")
@click.option("--page-size", type=int, default=0)
@click.option("--page-token", default="")
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


@command(subscription, "transfer")
@click.argument("subscription_id")
@click.option("--to", "target_tenant_id", required=True, help="the tenant to move it to")
async def subscription_transfer(state: State, subscription_id: str, target_tenant_id: str) -> None:
    """Move a subscription to another tenant (its role assignments are removed)."""
    async with session(state) as c:
        emit(state.output, to_dict(await c.transfer_subscription(subscription_id, target_tenant_id)))


# --- principals ------------------------------------------------------------------------------


@click.group()
def principal() -> None:
    """Users, service principals and managed identities."""


@command(principal, "create")
@click.option("--tenant", "tenant_id", required=True)
@click.option("--kind", type=click.Choice(["user", "service-principal"]), required=True)
@click.option("--admin", is_flag=True, help="make it a tenant administrator")
@click.option("--platform-service", default="", help="act as this platform service (operator only)")
@click.option("--with-secret", is_flag=True, help="also add a client secret and show it once")
@click.argument("display_name")
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


def _principal_command(
    name: str,
    help_text: str,
    action: Callable[[IdentityClient, str, str], Awaitable[Message | None]],
    aliases: tuple[str, ...] = (),
) -> None:
    @command(principal, name, help=help_text, aliases=aliases)
    @click.argument("tenant_id")
    @click.argument("object_id")
    async def principal_action(state: State, tenant_id: str, object_id: str) -> None:
        async with session(state) as c:
            result = await action(c, tenant_id, object_id)
        emit(
            state.output,
            to_dict(result) if result is not None else {"deleted": f"tenants/{tenant_id}/principals/{object_id}"},
        )


_principal_command("show", "Show a principal.", lambda c, t, o: c.get_principal(t, o), aliases=("get",))
_principal_command("enable", "Enable a principal.", lambda c, t, o: c.enable_principal(t, o))
_principal_command(
    "disable",
    "Disable a principal: no new tokens, and its tokens are refused.",
    lambda c, t, o: c.disable_principal(t, o),
)
_principal_command("delete", "Delete a user or service principal.", lambda c, t, o: c.delete_principal(t, o))


@command(principal, "list")
@click.argument("tenant_id")
@click.option("--kind", type=click.Choice(sorted(KINDS)), default=None)
@click.option("--page-size", type=int, default=0)
@click.option("--page-token", default="")
async def principal_list(state: State, tenant_id: str, kind: str | None, page_size: int, page_token: str) -> None:
    """List the principals of a tenant."""
    async with session(state) as c:
        page = await c.list_principals(tenant_id, KINDS[kind] if kind else 0, page_size, page_token)
    emit_messages(state.output, page.principals, PRINCIPAL_COLUMNS, {"next_page_token": page.next_page_token})


@command(principal, "rename")
@click.argument("tenant_id")
@click.argument("object_id")
@click.argument("display_name")
async def principal_rename(state: State, tenant_id: str, object_id: str, display_name: str) -> None:
    """Change a principal's display name."""
    async with session(state) as c:
        emit(state.output, to_dict(await c.rename_principal(tenant_id, object_id, display_name)))


# --- secrets -----------------------------------------------------------------------------------


@click.group()
def secret() -> None:
    """Client secrets (values are shown once, when added)."""


@command(secret, "add")
@click.argument("tenant_id")
@click.argument("object_id")
@click.option("--name", "display_name", default="")
@click.option("--days", type=int, default=0, help="lifetime in days (default 365, at most 730)")
async def secret_add(state: State, tenant_id: str, object_id: str, display_name: str, days: int) -> None:
    """Add a client secret; its value is printed this once."""
    async with session(state) as c:
        added = await c.add_client_secret(tenant_id, object_id, display_name, days)
    emit(state.output, {**to_dict(added.secret), "client_id": added.client_id, "client_secret": added.secret_value})


@command(secret, "list")
@click.argument("tenant_id")
@click.argument("object_id")
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


@command(secret, "delete")
@click.argument("tenant_id")
@click.argument("object_id")
@click.argument("secret_id")
async def secret_delete(state: State, tenant_id: str, object_id: str, secret_id: str) -> None:
    """Remove a client secret; it stops working at once."""
    async with session(state) as c:
        await c.delete_client_secret(tenant_id, object_id, secret_id)
    emit(state.output, {"deleted": secret_id})


# --- role assignments ----------------------------------------------------------------------------


@click.group()
def role() -> None:
    """Role assignments (Owner, Contributor, Reader on a scope)."""


@command(role, "assign")
@click.option("--principal", "principal_id", required=True, help="object id")
@click.option("--role", "role_name", type=click.Choice(sorted(ROLES)), required=True)
@click.option("--scope", required=True, help="/subscriptions/{id}[/resourceGroups/{rg}[/providers/...]]")
async def role_assign(state: State, principal_id: str, role_name: str, scope: str) -> None:
    """Grant a role on a scope."""
    async with session(state) as c:
        emit(state.output, to_dict(await c.create_role_assignment(principal_id, ROLES[role_name], scope)))


@command(role, "list")
@click.option("--principal", "principal_id", default="")
@click.option("--scope", default="")
@click.option("--page-size", type=int, default=0)
@click.option("--page-token", default="")
async def role_list(state: State, principal_id: str, scope: str, page_size: int, page_token: str) -> None:
    """List role assignments."""
    async with session(state) as c:
        page = await c.list_role_assignments(principal_id, scope, page_size, page_token)
    emit_messages(state.output, page.role_assignments, ROLE_COLUMNS, {"next_page_token": page.next_page_token})


@command(role, "show", aliases=("get",))
@click.argument("role_assignment_id")
async def role_get(state: State, role_assignment_id: str) -> None:
    """Show a role assignment."""
    async with session(state) as c:
        emit(state.output, to_dict(await c.get_role_assignment(role_assignment_id)))


@command(role, "delete")
@click.argument("role_assignment_id")
async def role_delete(state: State, role_assignment_id: str) -> None:
    """Remove a role assignment."""
    async with session(state) as c:
        await c.delete_role_assignment(role_assignment_id)
    emit(state.output, {"deleted": role_assignment_id})


@command(role, "check")
@click.option("--scope", required=True)
@click.option("--action", type=click.Choice(sorted(ACTIONS)), required=True)
@click.option("--principal", "principal_id", default="", help="object id (default: yourself)")
async def role_check(state: State, scope: str, action: str, principal_id: str) -> None:
    """Say whether a principal may do an action on a scope."""
    async with session(state) as c:
        emit(state.output, to_dict(await c.check_access(scope, ACTIONS[action], principal_id)))


@click.group()
def events() -> None:
    """The directory's event stream."""


@command(events, "list")
@click.option("--after", type=int, default=0, help="start after this sequence number")
@click.option("--wait", type=float, default=0.5, show_default=True, help="seconds to wait for more")
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


# --- platform principals -------------------------------------------------------------------


@command(None, "platform-credentials")
@click.option("--service", type=click.Choice(["keyvault", "speech"]), required=True)
@click.option("--operator-file", type=click.Path(path_type=Path, exists=True, dir_okay=False), required=True)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True, help="credentials file to write")
async def platform_credentials(state: State, service: str, operator_file: Path, out: Path) -> None:
    """Make the platform principal a service runs as, and write its credentials (mode 0600).
    Does nothing if the file exists (so an init container can run it on every start)."""
    from cmk_trio.client.identity import IdentityClient

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
