"""`cmk login`, `whoami`, `logout`, `cmk token get` and `cmk signing-key`: signing in (one
profile per sign-in), tokens, and the keys that sign them."""

from __future__ import annotations

import base64
import datetime
import json
from pathlib import Path

import click

from cmk_trio.cli.common import State, anonymous, command, load_profile, read_operator_file, session
from cmk_trio.cli.endpoints_file import TrioEndpoints
from cmk_trio.cli.output import emit, emit_messages, to_dict
from cmk_trio.cli.profile import Profile, profile_name
from cmk_trio.rpckit import audiences

# Imports inside functions: the client (gRPC with it) and rpckit.tokens (PyJWT and
# cryptography) are imported when a command runs, not when `cmk` starts, so that `cmk --help`
# loads none of them (see cli/common.py).

DEFAULT_ENDPOINTS = {"identity": "127.0.0.1:50051", "keyvault": "127.0.0.1:50052", "speech": "127.0.0.1:50053"}
"""Where `cmk up` serves, with its default --port-base."""

AUDIENCES = {
    "directory": audiences.DIRECTORY,
    "management": audiences.MANAGEMENT,
    "vault": audiences.VAULT,
    "speech": audiences.SPEECH,
}


def register(cli: click.Group) -> None:
    """Add `login`, `whoami`, `logout`, `token` and `signing-key` to `cmk`."""
    for made in (login, whoami, logout, token, signing_key):
        cli.add_command(made)


# --- signing in ----------------------------------------------------------------------------


@command(None, "login")
@click.option("--endpoint", default=None,
              help="identity endpoint host:port [CMK_IDENTITY_ENDPOINT, else the cmk up of ./.cmk (its"
                   " endpoints.json), else 127.0.0.1:50051]")  # fmt: skip
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
async def login(
    state: State,
    endpoint: str | None,
    operator_file: Path | None,
    tenant_id: str | None,
    client_id: str | None,
    client_secret: str | None,
    keyvault_endpoint: str | None,
    speech_endpoint: str | None,
) -> None:
    """Sign in and keep the tokens in the profile (mode 0600). Without endpoints, the ones of
    the `cmk up` of this directory (./.cmk/endpoints.json, whatever its --port-base), else
    cmk up's defaults: identity 127.0.0.1:50051, key vault :50052, speech :50053."""
    endpoint = endpoint or state.endpoint
    if endpoint is None:  # nothing given anywhere: the trio of `cmk up`, all three
        beside = TrioEndpoints.beside()
        found = beside.services if beside is not None else DEFAULT_ENDPOINTS
        if beside is not None and beside.tls_dir and not state.tls_dir:
            state.tls_dir = beside.tls_dir
        endpoint = found["identity"]
        keyvault_endpoint = keyvault_endpoint or state.keyvault_endpoint or found["keyvault"]
        speech_endpoint = speech_endpoint or state.speech_endpoint or found["speech"]
    keyvault_endpoint = keyvault_endpoint or state.keyvault_endpoint
    speech_endpoint = speech_endpoint or state.speech_endpoint
    if operator_file is not None:
        creds = read_operator_file(operator_file)
    else:
        if not tenant_id or not client_id:
            raise click.ClickException("give --operator-file, or --tenant and --client-id")
        secret = client_secret or click.prompt("client secret", hide_input=True)
        from cmk_trio.client.identity import ClientCredentials

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
            profile.keep(audience, issued.access_token, issued.expires_in)
    profile.save(state.profile_path)
    emit(
        state.output,
        {
            "signed_in": True,
            "tenant_id": creds.tenant_id,
            "client_id": creds.client_id,
            "endpoint": endpoint,
            "profile": profile_name(state.profile_path),
            "profile_file": str(state.profile_path),
            "keyvault_endpoint": profile.keyvault_endpoint,
            "speech_endpoint": profile.speech_endpoint,
        },
    )


@command(None, "whoami")
def whoami(state: State) -> None:
    """Who the profile is signed in as, where it talks to, and until when its tokens last."""
    profile = load_profile(state)
    claims: dict[str, object] = {}
    expiry: dict[str, str] = {}
    for audience, entry in sorted(profile.tokens.items()):
        expires = float(str(entry.get("expires_at", 0)))
        expiry[audience] = datetime.datetime.fromtimestamp(expires, datetime.UTC).isoformat()
        if not claims:  # the token's own claims (our stored token: nothing to verify here)
            body = str(entry.get("token", "")).split(".")[1:2]
            if body:
                claims = json.loads(base64.urlsafe_b64decode(body[0] + "=" * (-len(body[0]) % 4)))
    from cmk_trio.rpckit.tokens import OPERATOR_ROLE

    held = claims.get("roles")
    roles = [str(r) for r in held] if isinstance(held, list) else []
    emit(
        state.output,
        {
            "profile": profile_name(state.profile_path),
            "profile_file": str(state.profile_path),
            "tenant_id": profile.tenant_id,
            "client_id": profile.client_id,
            "object_id": claims.get("oid", ""),
            "kind": claims.get("idtyp", ""),
            "roles": roles,
            "operator": OPERATOR_ROLE in roles,
            "renews_from_operator_file": bool(profile.operator_file),
            "endpoint": profile.identity_endpoint,
            "keyvault_endpoint": profile.keyvault_endpoint,
            "speech_endpoint": profile.speech_endpoint,
            "tls_dir": profile.tls_dir,
            "tokens_expire": expiry,
        },
    )


@command(None, "logout")
def logout(state: State) -> None:
    """Forget the profile's tokens and endpoints (its file is removed); other profiles stay
    signed in."""
    path = state.profile_path
    try:
        existed = Profile.load(path) is not None
    except (ValueError, TypeError, AttributeError, UnicodeDecodeError):  # not a profile: not ours to delete
        raise click.ClickException(f"{path} is not a cmk profile; nothing was deleted") from None
    if existed:
        path.unlink()
    emit(state.output, {"signed_out": existed, "profile": profile_name(path), "profile_file": str(path)})


# --- tokens and signing keys ---------------------------------------------------------------------


@click.group()
def token() -> None:
    """Access tokens."""


@command(token, "get")
@click.option("--audience", type=click.Choice(sorted(AUDIENCES)), default="directory", show_default=True)
@click.option("--operator-file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--tenant", "tenant_id")
@click.option("--client-id")
@click.option("--client-secret", envvar="CMK_CLIENT_SECRET")
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
        from cmk_trio.client.identity import ClientCredentials

        creds = ClientCredentials(tenant_id, client_id, client_secret or click.prompt("client secret", hide_input=True))
    else:
        raise click.ClickException("give --operator-file, or --tenant, --client-id and --client-secret")
    async with anonymous(state) as c:
        issued = await c.issue_token(creds, AUDIENCES[audience])
    emit(state.output, to_dict(issued))


@click.group("signing-key")
def signing_key() -> None:
    """The directory's token signing keys."""


@command(signing_key, "list")
async def signing_key_list(state: State) -> None:
    """List the published signing keys."""
    async with anonymous(state) as c:
        keys = await c.list_signing_keys()
    emit_messages(state.output, keys, ("kid", "algorithm", "state", "create_time", "retire_time"), {})


@command(signing_key, "rotate")
async def signing_key_rotate(state: State) -> None:
    """Make a new signing key active (operator only)."""
    async with session(state) as c:
        emit(state.output, to_dict(await c.rotate_signing_key()))


@command(signing_key, "revoke")
@click.argument("kid")
async def signing_key_revoke(state: State, kid: str) -> None:
    """Withdraw a signing key at once, for a suspected leak (operator only): every token it
    signed is refused everywhere within a second; a new key signs if it was the active one."""
    async with session(state) as c:
        emit(state.output, to_dict(await c.revoke_signing_key(kid)))
