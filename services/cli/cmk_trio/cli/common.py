"""What every `cmk` command shares: the group state, the `command` decorator (--output,
the state, async bodies and error printing), and sessions signed in from the profile."""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import inspect
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from cmk_trio.cli.profile import Profile, profile_name, profile_path
from cmk_trio.rpckit import errors
from cmk_trio.rpckit.datadir import StartupError
from cmk_trio.rpckit.errors import ServiceError
from cmk_trio.rpckit.keyfiles import PrivateFileRefused
from cmk_trio.rpckit.reasons import Reason

# Imports inside functions: gRPC, the clients and cryptography are imported when a command
# runs, not when `cmk` starts, so that `cmk --help` and a usage error load none of them (a
# fifth of a second of CPU instead of most of a second).
if TYPE_CHECKING:
    import grpc

    from cmk_trio.client.identity import ClientCredentials, IdentityClient
    from cmk_trio.client.keyvault import KeyVaultClient
    from cmk_trio.client.speech import SpeechClient


C = TypeVar("C")
OUTPUTS = ["table", "json", "tsv"]
"""The formats of --output, az's names: a table for people, JSON for scripts, values for shells."""


class IsoTime(click.ParamType[datetime, str]):
    """An option's time in ISO 8601 (2027-01-31T00:00:00Z; without a zone, UTC): anything else
    is a one-line usage error naming the option."""

    name = "time"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
            return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 time such as 2027-01-31T00:00:00Z", param, ctx)


class TextFile(click.ParamType[str, str]):
    """An option naming a file of UTF-8 text: its text. A file that cannot be read, or that
    is not text, is a one-line usage error naming the option (never a traceback)."""

    name = "file"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> str:
        path = Path(str(value))
        try:
            return path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            self.fail(f"{path} is not UTF-8 text", param, ctx)
        except OSError as exc:
            self.fail(f"cannot read {path}: {exc.strerror or exc}", param, ctx)


class Base64(click.ParamType[bytes, str]):
    """An option's value in base64: bad input is a one-line usage error naming the option."""

    name = "base64"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> bytes:
        if isinstance(value, bytes):
            return value
        try:
            return base64.b64decode(str(value), validate=True)
        except (ValueError, binascii.Error):
            self.fail("is not base64 (A-Z, a-z, 0-9, + and /, padded with =)", param, ctx)


class State:
    """What the group options leave for the commands."""

    def __init__(
        self,
        output: str,
        profile: str | None,
        endpoint: str | None,
        keyvault_endpoint: str | None = None,
        speech_endpoint: str | None = None,
        tls_dir: str | None = None,
    ) -> None:
        self.output = output
        self.query: str | None = None
        """--query EXPRESSION: JMESPath (or plain field names) over the result (see output.emit)."""
        try:
            self.profile_path = profile_path(profile)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        self.endpoint = endpoint
        self.keyvault_endpoint = keyvault_endpoint
        self.speech_endpoint = speech_endpoint
        self.tls_dir = tls_dir
        self.traced: Sequence[grpc.aio.ClientInterceptor] = ()
        """The interceptors that carry the command's span on its calls, when tracing is on (cli.traced)."""

    def dial(self, endpoint: str, profile: Profile | None = None, *, peer: str | None = None) -> grpc.aio.Channel:
        """A channel to a service: mutual TLS with the CLI's certificate when a PKI directory
        is given (by --tls-dir or the profile), plain TCP otherwise. `peer`: which service
        it must be (its certificate must name it; see rpckit.channels)."""
        from cmk_trio.cli.diagnose import EndpointDiagnosis
        from cmk_trio.client.channel import ChannelTls, open_channel
        from cmk_trio.rpckit.devca import DevPki

        directory = self.tls_dir or (profile.tls_dir if profile else "")
        if not directory:
            return open_channel(endpoint, interceptors=[EndpointDiagnosis(endpoint, tls=False), *self.traced])
        pki = DevPki(Path(directory))
        cli = pki.identity("cli")
        tls = ChannelTls(pki.ca_file, cli.cert_file, cli.key_file)
        return open_channel(endpoint, tls, [EndpointDiagnosis(endpoint, tls=True), *self.traced], peer=peer)


def _output_option() -> click.Option:
    """`--output` on every command too, so it can follow the command name."""

    def remember(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
        if value is not None:
            ctx.ensure_object(State).output = value

    return click.Option(
        ["--output", "-o"],
        type=click.Choice(OUTPUTS),
        default=None,
        expose_value=False,
        callback=remember,
        help="table for people, json for scripts, tsv for shell variables",
    )


def _query_option() -> click.Option:
    """`--query EXPRESSION` on every command: a JMESPath expression over the result, as az's."""

    def remember(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
        if value is not None:
            from cmk_trio.cli.output import check_query

            ctx.ensure_object(State).query = check_query(value)

    return click.Option(
        ["--query", "-q"], default=None, expose_value=False, callback=remember, metavar="JMESPATH",
        help="print only what this JMESPath expression selects (plain field names: a.b,c), as values unless"
             " -o json, e.g. TENANT=$(cmk tenant create X -q tenant_id)",
    )  # fmt: skip


def _profile_option() -> click.Option:
    """`--profile` on every command too: `cmk logout --profile alice` as `cmk --profile alice logout`."""

    def remember(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
        if value is not None:
            try:
                ctx.ensure_object(State).profile_path = profile_path(value)
            except ValueError as exc:
                raise click.BadParameter(str(exc)) from None

    return click.Option(
        ["--profile"], default=None, expose_value=False, callback=remember, is_eager=True,
        help="the named profile (or a profile file) to use",
    )  # fmt: skip


# click calls a command's body with the options it parsed, by name: their types are the body's own
def run_async(f: Callable[..., Coroutine[object, object, object]]) -> Callable[..., object]:
    """Run an async command body; a service error becomes a clear message and exit code 1."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> object:  # (click's options, as above)
        from cmk_trio.cli.traced import command_span

        context = click.get_current_context()
        state = context.find_object(State)
        with command_span(context.command_path) as traced:
            if state is not None:
                state.traced = traced
            try:
                return asyncio.run(f(*args, **kwargs))
            except (ServiceError, StartupError) as exc:
                report_error(exc, json_output=state is not None and state.output == "json")

    return wrapper


def report_error(exc: ServiceError | StartupError, *, json_output: bool) -> NoReturn:
    """Print a service's error (or a file the CLI refused to trust) as its code and reason,
    in one line or as JSON, and exit 1. A refused profile or credential file is
    FAILED_PRECONDITION FILE_NOT_PRIVATE with the file's path; another file that cannot be
    read is the CLI's own error."""
    if isinstance(exc, PrivateFileRefused):
        exc = errors.FailedPrecondition(Reason.FILE_NOT_PRIVATE, str(exc), metadata={"path": str(exc.path)})
    elif isinstance(exc, StartupError):
        raise click.ClickException(str(exc)) from None
    from cmk_trio.rpckit.status import status_code_of

    code = status_code_of(exc).name
    if json_output:
        error = {"code": code, "reason": exc.reason.value, "message": exc.message, "metadata": exc.metadata}
        click.echo(json.dumps({"error": error}, indent=2), err=True)
    else:
        click.echo(f"error: {code} {exc.reason.value}: {exc.message}", err=True)
    sys.exit(1)


pass_state = click.make_pass_decorator(State)


def command(
    group: click.Group | None,
    name: str,
    *,
    aliases: tuple[str, ...] = (),
    queryable: bool = True,
    **settings: Any,  # click's own
) -> Callable[[Callable[..., object]], click.Command]:
    """Make a function the `cmk` command `name` in `group` (None: a command of `cmk` itself,
    which its module's `register` adds), with what every command has: an `--output` option,
    the group's `State` as the first argument, and, for an `async def`, the body run to
    completion with a service error printed as its code and reason and exit code 1.
    `settings` go to click (`help=` for commands made in a loop). `aliases`: old names that
    still work, hidden from the help and saying they are old (`get` became `show`).
    `queryable`: the command prints its result through output.emit, so --query applies.

    Put it above the command's own options and arguments, as click's `@group.command` goes."""

    def decorate(body: Callable[..., object]) -> click.Command:
        callback = run_async(body) if inspect.iscoroutinefunction(body) else body
        make = group.command if group is not None else click.command
        made = make(name, **settings)(pass_state(callback))
        # Last, after the command's own options: where `cmk X --help` has always listed it.
        made.params.append(_output_option())
        made.params.append(_profile_option())
        if queryable:
            made.params.append(_query_option())
        for alias in aliases:
            if group is None:
                raise TypeError("an alias belongs to a group")
            group.add_command(
                click.Command(alias, callback=made.callback, params=made.params, help=f"Old name of `{name}`.",
                              hidden=True, deprecated=f"use `{name}`"),
            )  # fmt: skip
        return made

    return decorate


# --- sessions ----------------------------------------------------------------------------


def read_operator_file(path: Path) -> ClientCredentials:
    """The credential in an operator (or platform credentials) file, checked as ssh checks
    its keys (ClientCredentials.from_file)."""
    from cmk_trio.client.identity import ClientCredentials

    return ClientCredentials.from_file(path)


def load_profile(state: State) -> Profile:
    profile = Profile.load(state.profile_path)
    if profile is None:
        raise click.ClickException(
            f"not signed in (profile {profile_name(state.profile_path)}: no file {state.profile_path}); run: cmk login"
        )
    return profile


class ProfileTokens:
    """Tokens from the profile (a TokenSource): renewed from its operator file when they run
    out, or when a service refuses one as expired on its own clock (a development clock moved
    forward); a profile signed in with a client secret, which it does not keep, names the
    command that signs it in again."""

    def __init__(self, state: State, profile: Profile, channel: grpc.aio.Channel) -> None:
        self._state, self._profile, self._channel = state, profile, channel

    async def __call__(self, audience: str) -> str:
        profile = self._profile
        token = profile.token(audience)
        if token is not None:
            return token
        if not profile.operator_file:
            name = profile_name(self._state.profile_path)
            raise click.ClickException(
                f"the token of profile {name} has expired (or its signing key was withdrawn); sign in again: "
                f"{profile.login_command(name)}"
            )
        from cmk_trio.client.identity import IdentityClient

        creds = read_operator_file(Path(profile.operator_file))
        issued = await IdentityClient(self._channel).issue_token(creds, audience)
        profile.keep(audience, issued.access_token, issued.expires_in)
        profile.save(self._state.profile_path)
        return issued.access_token

    def invalidate(self, audience: str) -> None:
        self._profile.forget(audience)


def profile_tokens(state: State, profile: Profile, channel: grpc.aio.Channel) -> ProfileTokens:
    """Tokens from the profile (see ProfileTokens)."""
    return ProfileTokens(state, profile, channel)


@asynccontextmanager
async def session(state: State) -> AsyncIterator[IdentityClient]:
    """A client signed in with the profile's tokens."""
    from cmk_trio.client.identity import IdentityClient

    profile = load_profile(state)
    channel = state.dial(state.endpoint or profile.identity_endpoint, profile, peer="identity")
    try:
        yield IdentityClient(channel, token_source=profile_tokens(state, profile, channel))
    finally:
        await channel.close()


@asynccontextmanager
async def anonymous(state: State, endpoint: str | None = None) -> AsyncIterator[IdentityClient]:
    """A client without a token, for signing in."""
    from cmk_trio.client.identity import IdentityClient

    target = endpoint or state.endpoint
    if target is None:
        profile = Profile.load(state.profile_path)
        if profile is None:
            raise click.ClickException("give --endpoint host:port (or sign in first)")
        target = profile.identity_endpoint
    channel = state.dial(target, Profile.load(state.profile_path), peer="identity")
    try:
        yield IdentityClient(channel)
    finally:
        await channel.close()


@asynccontextmanager
async def _service_session(
    state: State, service: str, make: Callable[[grpc.aio.Channel, Callable[[str], Awaitable[str]]], C]
) -> AsyncIterator[C]:
    """A client of the key vault or speech service, signed in with the profile's tokens."""
    profile = load_profile(state)
    endpoint = getattr(state, f"{service}_endpoint") or getattr(profile, f"{service}_endpoint")
    if not endpoint:
        raise click.ClickException(
            f"no {service} endpoint: give --{service}-endpoint, or cmk login --{service}-endpoint"
        )
    identity = state.dial(state.endpoint or profile.identity_endpoint, profile, peer="identity")
    channel = state.dial(endpoint, profile, peer=service)
    try:
        yield make(channel, profile_tokens(state, profile, identity))
    finally:
        await channel.close()
        await identity.close()


def keyvault_session(state: State) -> AbstractAsyncContextManager[KeyVaultClient]:
    """A key vault client signed in with the profile's tokens."""
    from cmk_trio.client.keyvault import KeyVaultClient

    return _service_session(state, "keyvault", KeyVaultClient)


def speech_session(state: State) -> AbstractAsyncContextManager[SpeechClient]:
    """A speech client signed in with the profile's tokens."""
    from cmk_trio.client.speech import SpeechClient

    return _service_session(state, "speech", SpeechClient)


def write_new_file(path: Path, data: bytes, option: str) -> None:
    """Write `data` to a file that must not exist yet, readable by its owner only (a backup, a
    key: nothing to leave world-readable, nothing to overwrite by a slip)."""
    try:
        with path.open("xb") as file:
            path.chmod(0o600)
            file.write(data)
    except FileExistsError:
        raise click.BadParameter(f"{path} exists; name a new file", param_hint=option) from None
