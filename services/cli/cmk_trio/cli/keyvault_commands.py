"""`cmk vault ...`, `cmk key ...` and `cmk audit ...`: the key vault from a shell."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from pathlib import Path

import click
from google.protobuf import timestamp_pb2

from cmk_trio.cli import secret_commands
from cmk_trio.cli.common import Base64, IsoTime, State, TextFile, command, keyvault_session, write_new_file
from cmk_trio.cli.output import emit, emit_messages, to_dict
from cmk_trio.proto.keyvault.v1 import resources_pb2 as res

VAULT_COLUMNS = ("vault_name", "location", "resource_group", "soft_delete_enabled", "purge_protection_enabled")
KEY_COLUMNS = ("key_id", "key_size", "enabled", "create_time")
AUDIT_COLUMNS = ("sequence", "time", "operation", "vault_name", "key_name", "result", "reason", "caller_object_id")
OPERATIONS = {"encrypt": res.ENCRYPT, "decrypt": res.DECRYPT, "wrapKey": res.WRAP_KEY, "unwrapKey": res.UNWRAP_KEY,
              "sign": res.SIGN, "verify": res.VERIFY}  # fmt: skip
ALGORITHMS = {"RSA-OAEP-256": res.RSA_OAEP_256, "RSA-OAEP": res.RSA_OAEP, "RSA1_5": res.RSA1_5}
SIGNATURES = {name: res.SignatureAlgorithm.Value(name) for name in res.SignatureAlgorithm.keys()[1:]}
CURVES = {"P-256": res.P_256, "P-384": res.P_384, "P-521": res.P_521}


def _stamp(when: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(when)
    return stamp


def register(cli: click.Group) -> None:
    """Add the key vault command groups to `cmk`."""
    vault.add_command(secret_commands.secret)
    cli.add_command(vault)
    cli.add_command(key)
    cli.add_command(audit)


# --- vaults ------------------------------------------------------------------------------


@click.group()
def vault() -> None:
    """Key vaults (control plane: management tokens, roles on the vault)."""


@command(vault, "create")
@click.argument("name")
@click.option("--subscription", "subscription_id", required=True)
@click.option("--resource-group", required=True)
@click.option("--location", required=True, help="a region such as westeurope")
@click.option("--retention-days", type=int, default=90, show_default=True)
@click.option("--purge-protection", is_flag=True)
@click.option("--no-soft-delete", is_flag=True, help="make deletes final (not recommended)")
async def vault_create(state: State, name: str, subscription_id: str, resource_group: str, location: str,
                       retention_days: int, purge_protection: bool, no_soft_delete: bool) -> None:  # fmt: skip
    """Create a vault; you get a full access policy on it."""
    async with keyvault_session(state) as kv:
        created = await kv.create_vault(
            name, subscription_id, resource_group, location,
            soft_delete=not no_soft_delete, retention_days=retention_days, purge_protection=purge_protection,
        )  # fmt: skip
    emit(state.output, to_dict(created))


@command(vault, "show")
@click.argument("name")
async def vault_show(state: State, name: str) -> None:
    """Show a vault."""
    async with keyvault_session(state) as kv:
        emit(state.output, to_dict(await kv.get_vault(name)))


@command(vault, "list")
@click.option("--subscription", "subscription_id", required=True)
@click.option("--deleted", is_flag=True, help="list the soft-deleted vaults")
async def vault_list(state: State, subscription_id: str, deleted: bool) -> None:
    """List the vaults of a subscription."""
    async with keyvault_session(state) as kv:
        page = await (kv.list_deleted_vaults if deleted else kv.list_vaults)(subscription_id)
    emit_messages(state.output, page.vaults, VAULT_COLUMNS, {"next_page_token": page.next_page_token})


@command(vault, "update")
@click.argument("name")
@click.option("--purge-protection", is_flag=True, help="turn purge protection on (it cannot be turned off)")
async def vault_update(state: State, name: str, purge_protection: bool) -> None:
    """Turn purge protection on."""
    if not purge_protection:
        raise click.UsageError("nothing to change: give --purge-protection")
    async with keyvault_session(state) as kv:
        emit(state.output, to_dict(await kv.update_vault(name, purge_protection=True)))


def _vault_action(name: str, help_text: str, method: str) -> None:
    @command(vault, name, help=help_text)
    @click.argument("vault_name")
    async def vault_action(state: State, vault_name: str) -> None:
        async with keyvault_session(state) as kv:
            result = await getattr(kv, method)(vault_name)
        emit(state.output, to_dict(result) if result is not None else {"vault": vault_name, "done": name})


_vault_action("delete", "Delete a vault (soft-deleted if it has soft-delete).", "delete_vault")
_vault_action("recover", "Recover a soft-deleted vault.", "recover_vault")
_vault_action("purge", "Purge a soft-deleted vault (refused under purge protection before its date).", "purge_vault")


@vault.group("policy")
def policy() -> None:
    """Access policies: which principals may do what with keys and secrets."""


@command(policy, "set")
@click.argument("vault_name")
@click.option("--object-id", required=True)
@click.option("--tenant", "tenant_id", required=True)
@click.option("--permissions", "--key-permissions", "permissions", default="",
              help="key permissions, comma-separated: get,wrapKey,unwrapKey,...")  # fmt: skip
@click.option("--secret-permissions", default="", help="secret permissions, comma-separated: get,list,set,...")
async def policy_set(
    state: State, vault_name: str, object_id: str, tenant_id: str, permissions: str, secret_permissions: str
) -> None:
    """Set a principal's key and secret permissions (replacing what it had)."""
    names = [p.strip() for p in permissions.split(",") if p.strip()]
    secret_names = [p.strip() for p in secret_permissions.split(",") if p.strip()]
    if not names and not secret_names:
        raise click.UsageError("give --permissions (keys), --secret-permissions, or both; policy delete removes")
    async with keyvault_session(state) as kv:
        updated = await kv.set_access_policy(vault_name, tenant_id, object_id, names, secret_names)
    emit_messages(state.output, updated.access_policies,
                  ("object_id", "tenant_id", "key_permissions", "secret_permissions"), {})  # fmt: skip


@command(policy, "delete")
@click.argument("vault_name")
@click.argument("object_id_arg", metavar="[OBJECT_ID]", required=False)
@click.option("--object-id", default=None, help="the principal whose entry to remove (as policy set names it)")
async def policy_delete(state: State, vault_name: str, object_id_arg: str | None, object_id: str | None) -> None:
    """Remove a principal's access policy entry (--object-id, as `policy set` takes it)."""
    if (object_id_arg is None) == (object_id is None):
        raise click.UsageError("name the principal once: --object-id ID")
    object_id = object_id or object_id_arg or ""
    async with keyvault_session(state) as kv:
        updated = await kv.remove_access_policy(vault_name, object_id)
    emit_messages(state.output, updated.access_policies, ("object_id", "tenant_id", "key_permissions"), {})


@command(policy, "list")
@click.argument("vault_name")
async def policy_list(state: State, vault_name: str) -> None:
    """List a vault's access policies."""
    async with keyvault_session(state) as kv:
        found = await kv.get_vault(vault_name)
    emit_messages(state.output, found.access_policies, ("object_id", "tenant_id", "key_permissions"), {})


# --- keys --------------------------------------------------------------------------------


@click.group()
def key() -> None:
    """Keys and key operations (data plane: vault tokens, access policies)."""


def _key_out(state: State, version: res.KeyVersion) -> None:
    data = to_dict(version)
    if state.output == "table" and not state.query:
        click.echo(f"Key Identifier: {version.key_id}")
    emit(state.output, data)


@command(key, "create")
@click.argument("vault_name")
@click.argument("name")
@click.option("--size", type=int, default=2048, show_default=True, help="an RSA key's size in bits")
@click.option("--curve", type=click.Choice(sorted(CURVES)), default=None, help="make an EC key on this curve")
@click.option("--ops", default="", help="comma-separated key operations (default: all of RSA's; sign,verify for EC)")
@click.option("--expires", type=IsoTime(), default=None, help="ISO 8601 time")
@click.option("--not-before", type=IsoTime(), default=None, help="ISO 8601 time")
async def key_create(state: State, vault_name: str, name: str, size: int, curve: str | None, ops: str,
                     expires: datetime | None, not_before: datetime | None) -> None:  # fmt: skip
    """Create an RSA key, or with --curve an EC key (or a new version of one)."""
    attributes = res.KeyVersion()
    for op in (o.strip() for o in ops.split(",") if o.strip()):
        if op not in OPERATIONS:
            raise click.BadParameter(f"unknown operation {op}; use {', '.join(OPERATIONS)}", param_hint="--ops")
        attributes.key_operations.append(OPERATIONS[op])
    if expires:
        attributes.expires.CopyFrom(_stamp(expires))
    if not_before:
        attributes.not_before.CopyFrom(_stamp(not_before))
    async with keyvault_session(state) as kv:
        made = await kv.create_key(vault_name, name, size=size, curve=CURVES[curve] if curve else None,
                                   attributes=attributes)  # fmt: skip
        _key_out(state, made)


@command(key, "import")
@click.argument("vault_name")
@click.argument("name")
@click.option("--jwk-file", "jwk", type=TextFile(), required=True)
async def key_import(state: State, vault_name: str, name: str, jwk: str) -> None:
    """Import an RSA or EC private key given as a JWK file."""
    async with keyvault_session(state) as kv:
        _key_out(state, await kv.import_key(vault_name, name, jwk))


@command(key, "show")
@click.argument("key_id")
async def key_show(state: State, key_id: str) -> None:
    """Show a key version (the newest if the identifier has none), with its Key Identifier."""
    async with keyvault_session(state) as kv:
        _key_out(state, await kv.get_key(key_id))


@command(key, "list")
@click.argument("vault_name")
@click.option("--deleted", is_flag=True)
async def key_list(state: State, vault_name: str, deleted: bool) -> None:
    """List a vault's keys (or its soft-deleted keys)."""
    async with keyvault_session(state) as kv:
        if deleted:
            gone = await kv.list_deleted_keys(vault_name)
            emit_messages(state.output, gone.deleted_keys, ("recovery_id", "delete_time", "purge_time"), {})
            return
        page = await kv.list_keys(vault_name)
    emit_messages(state.output, page.keys, KEY_COLUMNS, {"next_page_token": page.next_page_token})


@command(key, "versions")
@click.argument("key_id")
async def key_versions(state: State, key_id: str) -> None:
    """List a key's versions."""
    async with keyvault_session(state) as kv:
        page = await kv.list_versions(key_id)
    emit_messages(state.output, page.versions, KEY_COLUMNS, {"next_page_token": page.next_page_token})


@command(key, "update")
@click.argument("key_id")
@click.option("--enabled/--disabled", default=None)
@click.option("--expires", type=IsoTime(), default=None, help="ISO 8601 time")
@click.option("--not-before", type=IsoTime(), default=None, help="ISO 8601 time")
async def key_update(
    state: State, key_id: str, enabled: bool | None, expires: datetime | None, not_before: datetime | None
) -> None:
    """Change a key version's attributes."""
    attributes, paths = res.KeyVersion(), []
    if enabled is not None:
        attributes.enabled = enabled
        paths.append("enabled")
    if expires:
        attributes.expires.CopyFrom(_stamp(expires))
        paths.append("expires")
    if not_before:
        attributes.not_before.CopyFrom(_stamp(not_before))
        paths.append("not_before")
    if not paths:
        raise click.UsageError("nothing to change: give --enabled/--disabled, --expires or --not-before")
    async with keyvault_session(state) as kv:
        _key_out(state, await kv.update_key(key_id, attributes, paths))


@command(key, "rotate")
@click.argument("key_id")
async def key_rotate(state: State, key_id: str) -> None:
    """Make a new version of a key."""
    async with keyvault_session(state) as kv:
        _key_out(state, await kv.rotate_key(key_id))


@command(key, "delete")
@click.argument("key_id")
async def key_delete(state: State, key_id: str) -> None:
    """Delete a key (soft-deleted if the vault has soft-delete)."""
    async with keyvault_session(state) as kv:
        emit(state.output, to_dict(await kv.delete_key(key_id)))


@command(key, "recover")
@click.argument("key_id")
async def key_recover(state: State, key_id: str) -> None:
    """Recover a soft-deleted key."""
    async with keyvault_session(state) as kv:
        _key_out(state, await kv.recover_key(key_id))


@command(key, "backup")
@click.argument("key_id")
@click.option("--file", "out", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="where to write the backup (made with mode 0600; an existing file is not overwritten)")  # fmt: skip
async def key_backup(state: State, key_id: str, out: Path) -> None:
    """Back up every version of a key into a file that only this key vault can restore."""
    async with keyvault_session(state) as kv:
        blob = await kv.backup_key(key_id)
    write_new_file(out, blob, "--file")
    emit(state.output, {"key_id": key_id, "file": str(out), "bytes": len(blob)})


@command(key, "restore")
@click.argument("vault_name")
@click.option("--file", "source", type=click.Path(path_type=Path, exists=True, dir_okay=False), required=True)
async def key_restore(state: State, vault_name: str, source: Path) -> None:
    """Restore a backed-up key, with its versions, into a vault of its subscription."""
    async with keyvault_session(state) as kv:
        _key_out(state, await kv.restore_key(vault_name, source.read_bytes()))


@command(key, "purge")
@click.argument("key_id")
async def key_purge(state: State, key_id: str) -> None:
    """Purge a soft-deleted key (refused under purge protection before its date)."""
    async with keyvault_session(state) as kv:
        await kv.purge_key(key_id)
    emit(state.output, {"purged": key_id})


@command(key, "wrap")
@click.argument("key_id")
@click.option("--value", required=True, type=Base64(), help="the key to wrap, base64")
@click.option("--algorithm", type=click.Choice(sorted(ALGORITHMS)), default="RSA-OAEP-256", show_default=True)
async def key_wrap(state: State, key_id: str, value: bytes, algorithm: str) -> None:
    """Wrap a key; prints the wrapped value in base64."""
    async with keyvault_session(state) as kv:
        reply = await kv.wrap(key_id, value, ALGORITHMS[algorithm])
    emit(state.output, {"key_id": reply.key_id, "value": base64.b64encode(reply.ciphertext).decode(),
                        "algorithm_recommended": reply.algorithm_recommended})  # fmt: skip


@command(key, "unwrap")
@click.argument("key_id")
@click.option("--value", required=True, type=Base64(), help="the wrapped key, base64")
@click.option("--algorithm", type=click.Choice(sorted(ALGORITHMS)), default="RSA-OAEP-256", show_default=True)
async def key_unwrap(state: State, key_id: str, value: bytes, algorithm: str) -> None:
    """Unwrap a key; prints it in base64."""
    async with keyvault_session(state) as kv:
        reply = await kv.unwrap(key_id, value, ALGORITHMS[algorithm])
    emit(state.output, {"key_id": reply.key_id, "value": base64.b64encode(reply.plaintext).decode(),
                        "algorithm_recommended": reply.algorithm_recommended})  # fmt: skip


@command(key, "sign")
@click.argument("key_id")
@click.option(
    "--digest", required=True, type=Base64(), help="the digest to sign, base64 (as long as the algorithm's hash)"
)
@click.option("--algorithm", type=click.Choice(sorted(SIGNATURES)), required=True)
async def key_sign(state: State, key_id: str, digest: bytes, algorithm: str) -> None:
    """Sign a digest; prints the signature in base64."""
    async with keyvault_session(state) as kv:
        reply = await kv.sign(key_id, SIGNATURES[algorithm], digest)
    emit(state.output, {"key_id": reply.key_id, "signature": base64.b64encode(reply.signature).decode()})


@command(key, "verify")
@click.argument("key_id")
@click.option("--digest", required=True, type=Base64(), help="the digest that was signed, base64")
@click.option("--signature", required=True, type=Base64(), help="the signature, base64")
@click.option("--algorithm", type=click.Choice(sorted(SIGNATURES)), required=True)
async def key_verify(state: State, key_id: str, digest: bytes, signature: bytes, algorithm: str) -> None:
    """Check a signature with the vault; prints whether it is valid."""
    async with keyvault_session(state) as kv:
        reply = await kv.verify(key_id, SIGNATURES[algorithm], digest,
                                signature)  # fmt: skip
    emit(state.output, {"key_id": reply.key_id, "valid": reply.valid})


# --- audit -------------------------------------------------------------------------------


@click.group()
def audit() -> None:
    """The key vault's tamper-evident audit log."""


@command(audit, "list")
@click.option("--vault", "vault_name", default="", help="one vault (needs Reader on it); all for the operator")
@click.option("--result", type=click.Choice(["allowed", "denied", "error"]), default=None)
@click.option("--page-size", type=int, default=0)
@click.option("--page-token", default="")
async def audit_list(state: State, vault_name: str, result: str | None, page_size: int, page_token: str) -> None:
    """List audit records, oldest first."""
    async with keyvault_session(state) as kv:
        page = await kv.list_audit(vault_name, result=result or "", page_size=page_size, page_token=page_token)
    emit_messages(state.output, page.records, AUDIT_COLUMNS, {"next_page_token": page.next_page_token})


@command(audit, "checkpoint")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), help="save the signed checkpoint here")
async def audit_checkpoint(state: State, out: Path | None) -> None:
    """Sign a checkpoint of the log now (operator only); keep it to verify against later."""
    async with keyvault_session(state) as kv:
        checkpoint = await kv.checkpoint()
    data = to_dict(checkpoint)
    if out is not None:
        out.write_text(json.dumps(data, indent=2) + "\n")
    emit(state.output, data)


@command(audit, "verify")
@click.option("--checkpoint", "checkpoint_file", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="a checkpoint saved earlier: also catches newest records cut off since")  # fmt: skip
async def audit_verify(state: State, checkpoint_file: Path | None) -> None:
    """Check the whole chain (operator only); exit 1 and name the first broken record if not intact."""
    checkpoint = None
    if checkpoint_file is not None:
        try:
            data = json.loads(checkpoint_file.read_text())
            checkpoint = res.AuditCheckpoint(count=int(data["count"]), head=data["head"], time=data["time"],
                                             signature=data["signature"])  # fmt: skip
        except (ValueError, KeyError, TypeError, OSError):
            raise click.BadParameter(
                f"{checkpoint_file} is not a checkpoint that `cmk audit checkpoint` wrote", param_hint="--checkpoint"
            ) from None
    async with keyvault_session(state) as kv:
        verdict = await kv.verify_audit(checkpoint)
    emit(state.output, to_dict(verdict))
    if not verdict.ok:
        raise SystemExit(1)
