"""`cmk speech ...`: speech resources, their identity and encryption, CMK approvals,
Custom Commands applications and LUIS keys."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from cmk_trio.cli.common import IsoTime, State, TextFile, command, speech_session
from cmk_trio.cli.output import emit, emit_messages, to_dict
from cmk_trio.proto.speech.v1 import resources_pb2 as res

# Imports inside functions: speech's envelope (its ring file's format, with cryptography) is
# imported when `cmk speech rotate-master-key` runs, not when `cmk` starts, so that `cmk
# --help` loads none of it (see cli/common.py).

RESOURCE_COLUMNS = ("name", "location", "pricing_tier")
APP_COLUMNS = ("application_id", "display_name", "etag", "update_time")
TIERS = {"F0": res.F0, "S0": res.S0}


def register(cli: click.Group) -> None:
    """Add the `speech` command group to `cmk`."""
    cli.add_command(speech)


@click.group()
def speech() -> None:
    """Speech resources and the data they keep encrypted at rest."""


@command(speech, "create")
@click.argument("name")
@click.option("--subscription", "subscription_id", required=True)
@click.option("--resource-group", required=True)
@click.option("--location", required=True)
@click.option("--tier", type=click.Choice(sorted(TIERS)), default="S0", show_default=True)
@click.option("--created", type=IsoTime(), default=None, help="operator only: a backdated creation time (ISO 8601)")
async def speech_create(state: State, name: str, subscription_id: str, resource_group: str, location: str,
                        tier: str, created: datetime | None) -> None:  # fmt: skip
    """Create a speech resource (always with Microsoft-managed keys)."""
    async with speech_session(state) as s:
        made = await s.create_resource(
            subscription_id, resource_group, name, location, tier=TIERS[tier], backdate=created
        )
    emit(state.output, to_dict(made))


@command(speech, "show")
@click.argument("resource_id")
async def speech_show(state: State, resource_id: str) -> None:
    """Show a resource with its identity and encryption status."""
    async with speech_session(state) as s:
        emit(state.output, to_dict(await s.get_resource(resource_id)))


@command(speech, "list")
@click.option("--subscription", "subscription_id", required=True)
async def speech_list(state: State, subscription_id: str) -> None:
    """List a subscription's speech resources."""
    async with speech_session(state) as s:
        page = await s.list_resources(subscription_id)
    emit_messages(state.output, page.resources, RESOURCE_COLUMNS, {"next_page_token": page.next_page_token})


@command(speech, "delete")
@click.argument("resource_id")
async def speech_delete(state: State, resource_id: str) -> None:
    """Delete a resource and its data."""
    async with speech_session(state) as s:
        await s.delete_resource(resource_id)
    emit(state.output, {"deleted": resource_id})


@command(speech, "rotate-master-key")
@click.option("--ring-file", type=click.Path(path_type=Path, exists=True, dir_okay=False), required=True,
              help="the ring file, by default <data-dir>/speech-master-keys.json")  # fmt: skip
def rotate_master_key(state: State, ring_file: Path) -> None:
    """Add a new current version to the Microsoft-managed master key ring (offline); the
    service rewraps its data keys to it at the next start."""
    from cmk_trio.speech.envelope import rotate_ring_file

    ring = rotate_ring_file(ring_file)
    emit(state.output, {"ring_file": str(ring_file), "current": ring.current, "versions": sorted(ring.keys)})


@command(speech, "move")
@click.argument("resource_id")
@click.option("--to-subscription", "subscription_id", required=True)
@click.option("--to-resource-group", "resource_group", required=True)
async def speech_move(state: State, resource_id: str, subscription_id: str, resource_group: str) -> None:
    """Move a resource (to another tenant's subscription: operator only; its identity is lost)."""
    async with speech_session(state) as s:
        emit(state.output, to_dict(await s.move_resource(resource_id, subscription_id, resource_group)))


# --- identity and encryption -------------------------------------------------------------


@speech.group("identity")
def identity() -> None:
    """The resource's system-assigned managed identity."""


@command(identity, "assign")
@click.argument("resource_id")
async def identity_assign(state: State, resource_id: str) -> None:
    """Give the resource a managed identity (a new object id each time)."""
    async with speech_session(state) as s:
        done = await s.assign_identity(resource_id)
    emit(state.output, to_dict(done))


@command(identity, "remove")
@click.argument("resource_id")
@click.option("--confirm-data-inaccessible", is_flag=True, help="needed when customer-managed keys are on")
async def identity_remove(state: State, resource_id: str, confirm_data_inaccessible: bool) -> None:
    """Remove the managed identity (with CMK on, the data becomes unreadable)."""
    async with speech_session(state) as s:
        done = await s.remove_identity(resource_id, confirm=confirm_data_inaccessible)
    emit(state.output, to_dict(done))


@speech.group("encryption")
def encryption() -> None:
    """Microsoft-managed or customer-managed keys."""


@command(encryption, "set")
@click.argument("resource_id")
@click.option("--key-uri", default="",
              help="the Key Identifier: with a version, pinned to it; without, it follows the newest")  # fmt: skip
@click.option("--key-subscription", default="", help="the vault's subscription (with --key-uri)")
@click.option("--vault", "vault_name", default="", help="or: the vault")
@click.option("--key", "key_name", default="", help="and the key")
@click.option("--version", "key_version", default="", help="and optionally its version")
@click.option("--no-grant", is_flag=True, help="the identity already has access: do not grant it")
async def encryption_set(state: State, resource_id: str, key_uri: str, key_subscription: str, vault_name: str,
                         key_name: str, key_version: str, no_grant: bool) -> None:  # fmt: skip
    """Use a customer-managed key (checked end to end; any failure changes nothing)."""
    async with speech_session(state) as s:
        done = await s.set_encryption(
            resource_id, key_uri=key_uri, key_subscription_id=key_subscription, vault_name=vault_name,
            key_name=key_name, key_version=key_version, skip_grant=no_grant,
        )  # fmt: skip
    emit(state.output, to_dict(done.encryption) | {"identity": to_dict(done.identity)})


@command(encryption, "disable")
@click.argument("resource_id")
async def encryption_disable(state: State, resource_id: str) -> None:
    """Go back to the Microsoft-managed key."""
    async with speech_session(state) as s:
        done = await s.disable_encryption(resource_id)
    emit(state.output, to_dict(done.encryption))


@command(encryption, "show")
@click.argument("resource_id")
async def encryption_show(state: State, resource_id: str) -> None:
    """Show the encryption settings and status."""
    async with speech_session(state) as s:
        found = await s.get_resource(resource_id)
    emit(state.output, to_dict(found.encryption))


# --- approvals ---------------------------------------------------------------------------


@speech.group("cmk-approval")
def approval() -> None:
    """A subscription's approval to use customer-managed keys (the seed's request form)."""


def _approval_command(name: str, help_text: str, method: str) -> None:
    @command(approval, name, help=help_text)
    @click.option("--subscription", "subscription_id", required=True)
    @click.option("--note", default="")
    async def approval_action(state: State, subscription_id: str, note: str) -> None:
        async with speech_session(state) as s:
            fn = getattr(s, method)
            result = await (fn(subscription_id) if method == "get_approval" else fn(subscription_id, note))
        emit(state.output, to_dict(result))


_approval_command("request", "Ask for CMK (an Owner of the subscription).", "request_approval")
_approval_command("approve", "Approve a request (the operator).", "approve")
_approval_command("reject", "Reject a request (the operator).", "reject")
_approval_command("show", "Show the subscription's approval.", "get_approval")


# --- applications and LUIS keys ----------------------------------------------------------


@speech.group("app")
def app() -> None:
    """Custom Commands applications (their configuration JSON is kept encrypted)."""


@command(app, "create")
@click.argument("resource_id")
@click.option("--name", "display_name", required=True)
@click.option("--config-file", "config", type=TextFile(), required=True)
async def app_create(state: State, resource_id: str, display_name: str, config: str) -> None:
    """Create an application from a configuration JSON file."""
    async with speech_session(state) as s:
        emit(state.output, to_dict(await s.create_application(resource_id, display_name, config)))


@command(app, "show", aliases=("get",))
@click.argument("name")
async def app_get(state: State, name: str) -> None:
    """Get an application (NAME is {resource id}/applications/{id})."""
    async with speech_session(state) as s:
        emit(state.output, to_dict(await s.get_application(name)))


@command(app, "update")
@click.argument("name")
@click.option("--etag", required=True)
@click.option("--name", "display_name", required=True)
@click.option("--config-file", "config", type=TextFile(), required=True)
async def app_update(state: State, name: str, etag: str, display_name: str, config: str) -> None:
    """Replace an application (the etag must be current)."""
    async with speech_session(state) as s:
        emit(state.output, to_dict(await s.update_application(name, etag, display_name, config)))


@command(app, "delete")
@click.argument("name")
@click.option("--etag", default="")
async def app_delete(state: State, name: str, etag: str) -> None:
    """Delete an application."""
    async with speech_session(state) as s:
        await s.delete_application(name, etag)
    emit(state.output, {"deleted": name})


@command(app, "list")
@click.argument("resource_id")
@click.option("--page-size", type=int, default=0)
@click.option("--page-token", default="")
async def app_list(state: State, resource_id: str, page_size: int, page_token: str) -> None:
    """List a resource's applications."""
    async with speech_session(state) as s:
        page = await s.list_applications(resource_id, page_size, page_token)
    emit_messages(state.output, page.applications, APP_COLUMNS, {"next_page_token": page.next_page_token})


@speech.group("luis-keys")
def luis_keys() -> None:
    """The resource's LUIS authoring and prediction keys (kept encrypted)."""


@command(luis_keys, "set")
@click.argument("resource_id")
@click.option("--authoring-key", required=True)
@click.option("--prediction-key", required=True)
async def luis_set(state: State, resource_id: str, authoring_key: str, prediction_key: str) -> None:
    """Set the LUIS keys."""
    async with speech_session(state) as s:
        emit(state.output, to_dict(await s.set_luis_keys(resource_id, authoring_key, prediction_key)))


@command(luis_keys, "show", aliases=("get",))
@click.argument("resource_id")
async def luis_get(state: State, resource_id: str) -> None:
    """Get the LUIS keys."""
    async with speech_session(state) as s:
        emit(state.output, to_dict(await s.get_luis_keys(resource_id)))
