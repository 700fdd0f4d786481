"""`cmk vault secret ...`: the key vault's secrets from a shell, as `az keyvault secret` spells
them (`cmk secret` is identity's, for client secrets)."""

from __future__ import annotations

from pathlib import Path

import click

from cmk_trio.cli.common import State, TextFile, command, keyvault_session, write_new_file
from cmk_trio.cli.output import emit, emit_messages, to_dict
from cmk_trio.proto.keyvault.v1 import resources_pb2 as res

SECRET_COLUMNS = ("secret_id", "content_type", "enabled", "create_time")


@click.group()
def secret() -> None:
    """Secrets (data plane: vault tokens, the secret half of access policies)."""


def _secret_out(state: State, found: res.Secret) -> None:
    if state.output == "table" and not state.query:
        click.echo(f"Secret Identifier: {found.secret_id}")
    emit(state.output, to_dict(found))


@command(secret, "set")
@click.argument("vault_name")
@click.argument("name")
@click.option("--value", default=None, help="the value (it stays in the shell's history: prefer --file)")
@click.option("--file", "source", type=TextFile(), default=None, help="read the value from this file (UTF-8)")
@click.option("--content-type", default="", help="what the value is, as a MIME type or any text")
async def secret_set(state: State, vault_name: str, name: str, value: str | None, source: str | None,
                     content_type: str) -> None:  # fmt: skip
    """Set a secret's value: a new version (the secret made if new)."""
    if (value is None) == (source is None):
        raise click.UsageError("give the value with exactly one of --value and --file")
    text = value if value is not None else source or ""
    async with keyvault_session(state) as kv:
        made = await kv.set_secret(vault_name, name, text, attributes=res.Secret(content_type=content_type))
    made.value = ""  # (what was set is not printed back)
    _secret_out(state, made)


@command(secret, "show")
@click.argument("secret_id")
async def secret_show(state: State, secret_id: str) -> None:
    """Show a secret version with its value (the newest if the identifier has none)."""
    async with keyvault_session(state) as kv:
        _secret_out(state, await kv.get_secret(secret_id))


@command(secret, "list")
@click.argument("vault_name")
@click.option("--deleted", is_flag=True)
async def secret_list(state: State, vault_name: str, deleted: bool) -> None:
    """List a vault's secrets, without values (or its soft-deleted secrets)."""
    async with keyvault_session(state) as kv:
        if deleted:
            gone = await kv.list_deleted_secrets(vault_name)
            emit_messages(state.output, gone.deleted_secrets, ("recovery_id", "delete_time", "purge_time"), {})
            return
        page = await kv.list_secrets(vault_name)
    emit_messages(state.output, page.secrets, SECRET_COLUMNS, {"next_page_token": page.next_page_token})


@command(secret, "versions")
@click.argument("secret_id")
async def secret_versions(state: State, secret_id: str) -> None:
    """List a secret's versions, without values."""
    async with keyvault_session(state) as kv:
        page = await kv.list_secret_versions(secret_id)
    emit_messages(state.output, page.versions, SECRET_COLUMNS, {"next_page_token": page.next_page_token})


@command(secret, "update")
@click.argument("secret_id")
@click.option("--enabled/--disabled", default=None)
@click.option("--content-type", default=None)
async def secret_update(state: State, secret_id: str, enabled: bool | None, content_type: str | None) -> None:
    """Change a secret version's attributes."""
    attributes, paths = res.Secret(), []
    if enabled is not None:
        attributes.enabled = enabled
        paths.append("enabled")
    if content_type is not None:
        attributes.content_type = content_type
        paths.append("content_type")
    if not paths:
        raise click.UsageError("nothing to change: give --enabled/--disabled or --content-type")
    async with keyvault_session(state) as kv:
        _secret_out(state, await kv.update_secret(secret_id, attributes, paths))


@command(secret, "delete")
@click.argument("secret_id")
async def secret_delete(state: State, secret_id: str) -> None:
    """Delete a secret (soft-deleted if the vault has soft-delete)."""
    async with keyvault_session(state) as kv:
        emit(state.output, to_dict(await kv.delete_secret(secret_id)))


@command(secret, "recover")
@click.argument("secret_id")
async def secret_recover(state: State, secret_id: str) -> None:
    """Recover a soft-deleted secret."""
    async with keyvault_session(state) as kv:
        _secret_out(state, await kv.recover_secret(secret_id))


@command(secret, "purge")
@click.argument("secret_id")
async def secret_purge(state: State, secret_id: str) -> None:
    """Purge a soft-deleted secret (refused under purge protection before its date)."""
    async with keyvault_session(state) as kv:
        await kv.purge_secret(secret_id)
    emit(state.output, {"purged": secret_id})


@command(secret, "backup")
@click.argument("secret_id")
@click.option("--file", "out", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="where to write the backup (made with mode 0600; an existing file is not overwritten)")  # fmt: skip
async def secret_backup(state: State, secret_id: str, out: Path) -> None:
    """Back up every version of a secret into a file that only this key vault can restore."""
    async with keyvault_session(state) as kv:
        blob = await kv.backup_secret(secret_id)
    write_new_file(out, blob, "--file")
    emit(state.output, {"secret_id": secret_id, "file": str(out), "bytes": len(blob)})


@command(secret, "restore")
@click.argument("vault_name")
@click.option("--file", "source", type=click.Path(path_type=Path, exists=True, dir_okay=False), required=True)
async def secret_restore(state: State, vault_name: str, source: Path) -> None:
    """Restore a backed-up secret, with its versions, into a vault of its subscription."""
    async with keyvault_session(state) as kv:
        _secret_out(state, await kv.restore_secret(vault_name, source.read_bytes()))
