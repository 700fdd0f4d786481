"""One shape and one parser for every service's settings.

A service's settings are a frozen dataclass that extends `ServiceSettings` with fields of its
own. A field that can be set from outside says so with `setting(...)`: the CMK_* variable that
sets it (`{SERVICE}` in its name stands for the service's own prefix), its command-line flag
(by default the field's name: `--data-dir`; a duration's ends in `-seconds`) and a line of
help. A field that is a group of settings (`TlsConfig`) is made with `group(...)`.

`load(env, given)` reads every setting once, by the field's type, from the variables in `env`
overlaid with `given` (what a command line said, or what `cmk up` sets, keyed by the same
variable names), and refuses a malformed value with a ConfigError naming its variable and
flag; the class's `__post_init__` then checks what the values mean together. `cmk serve
<service>` makes its flags from the same fields (`options(cls)`), `python -m
cmk_trio.<service>` reads only the variables: no setting is named in two places.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

from cmk_trio.rpckit.config import (
    FALSE,
    GROUP,
    SETTING,
    TRUE,
    ConfigError,
    Setting,
    TlsConfig,
    check_database_url,
    group,
    setting,
)

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


@dataclass(frozen=True)
class Option:
    """One thing a command line may say: the flag, the variable it stands for, its help, and
    whether it is an on/off switch."""

    flag: str
    env: str
    help: str
    switch: bool


def options(cls: type[DataclassInstance], service: str | None = None) -> list[Option]:
    """The flags of a settings class, in field order (a group's, in its place)."""
    prefix = service if service is not None else getattr(cls, "SERVICE", "")
    found = []
    for f, kind, option in _settings(cls):
        if option is None:
            found += options(kind, prefix)
            continue
        if option.flag is None:
            continue
        flag = option.flag or "--" + f.name.replace("_", "-") + ("-seconds" if kind is timedelta else "")
        env = option.env.replace("{SERVICE}", prefix)
        found.append(Option(flag, env, option.help, _bare(kind) is bool))
    return found


@dataclass(frozen=True)
class Described:
    """One setting as the reference documentation shows it."""

    env: str
    flag: str | None
    default: str
    help: str


def describe(cls: type[DataclassInstance], service: str | None = None) -> list[Described]:
    """Every setting of a class (with or without a flag), its default as text ("" when it
    has none, or is made of several variables), for the README's reference."""
    prefix = service if service is not None else getattr(cls, "SERVICE", "")
    flags = {o.env: o.flag for o in options(cls, prefix)}
    found = []
    for f, kind, option in _settings(cls):
        if option is None:
            found += describe(kind, prefix)
            continue
        env = option.env.replace("{SERVICE}", prefix)
        default = "" if f.default is dataclasses.MISSING or f.default is None else f.default
        if isinstance(default, timedelta):
            default = f"{default.total_seconds():g}"
        found.append(Described(env, flags.get(env), str(default), option.help))
    return found


def read(
    cls: type[DataclassInstance], env: Mapping[str, str], service: str, *, with_flags: bool = True
) -> dict[str, Any]:  # (see the docstring)
    """The values `env` gives the fields of `cls` (those it does not mention are left out,
    so the defaults stand). Each value has its field's type, converted by `_convert` from the
    field's annotation at run time: mypy cannot follow that, hence the Any of the values."""
    values: dict[str, Any] = {}  # each of its field's type (see above)
    for f, kind, option in _settings(cls):
        if option is None:
            values[f.name] = kind(**read(kind, env, service, with_flags=with_flags))
            continue
        name = option.env.replace("{SERVICE}", service)
        if option.load is not None:
            loaded = option.load(env, service)
            if loaded is not None:
                values[f.name] = loaded
            continue
        raw = env.get(name)
        if raw is None or (raw == "" and _bare(kind) is not str):  # (an empty text is a text; "" is no number)
            continue
        where = _where(cls, name, with_flags)
        values[f.name] = _convert(kind, raw, where, option.secret)
        if option.must_exist and not Path(raw).is_file():
            raise ConfigError(f"{where}: no such file: {raw}")
    return values


# (a field of any type, as dataclasses.fields gives them, and its annotation read at run time)
def _settings(cls: type[DataclassInstance]) -> Iterator[tuple[dataclasses.Field[Any], Any, Setting | None]]:
    """Each field of `cls` that is a setting (with its type) or a group (None)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get(GROUP):
            yield f, hints[f.name], None
        elif SETTING in f.metadata:
            yield f, hints[f.name], f.metadata[SETTING]


def _where(cls: type[DataclassInstance], name: str, with_flags: bool) -> str:
    """The variable `name`, and its flag where the process was started by a command that has flags."""
    flags = [o.flag for o in options(cls) if o.env == name] if with_flags else []
    return f"{name} ({flags[0]})" if flags else name


def _bare(kind: object) -> object:
    """`X` of `X | None`."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        rest = [k for k in typing.get_args(kind) if k is not type(None)]
        return rest[0] if len(rest) == 1 else kind
    return kind


def _convert(kind: object, raw: str, where: str, secret: bool) -> object:
    bare = _bare(kind)
    shown = "" if secret else f", not {raw!r}"
    try:
        if bare is str:
            return raw
        if bare is bool:
            if raw.lower() in TRUE | FALSE:
                return raw.lower() in TRUE
            raise ValueError(raw)
        if bare is int:
            return int(raw)
        if bare is float:
            return float(raw)
        if bare is Path:
            return Path(raw)
        if bare is timedelta:
            seconds = float(raw)
            if not math.isfinite(seconds):
                raise ValueError(raw)
            return timedelta(seconds=seconds)
    except (ValueError, OverflowError):
        what: dict[object, str] = {
            bool: "true or false",
            int: "an integer",
            float: "a number",
            timedelta: "a number of seconds",
        }
        raise ConfigError(f"{where} must be {what.get(bare, 'valid')}{shown}") from None
    raise TypeError(f"a setting of type {kind} cannot be read from text")  # (a defect of the class, not the input)


def port_setting(default: int) -> Any:  # (a setting: see config.setting)
    """The port a service listens on, `default` unless its CMK_<SERVICE>_PORT says."""
    return setting(default, env="CMK_{SERVICE}_PORT", help="port; 0 picks a free one")


def heartbeat_setting() -> Any:  # (a setting: see config.setting)
    """The setting of a service that serves an event stream (identity, the key vault)."""
    return setting(
        timedelta(seconds=5),
        env="CMK_EVENT_HEARTBEAT_SECONDS",
        help="how long an event stream may be idle before it says it is alive (followers refuse to cache what"
        " it could revoke while they have not heard it, and refuse tokens when they have heard nothing for"
        " CMK_REVOCATION_MAX_STALENESS_SECONDS)",
    )


@dataclass(frozen=True, kw_only=True)
class ServiceSettings:
    """What every service process has: where its data is, where it listens and how, its
    log level and metrics, its database, and the development clock.

    A service's class sets `SERVICE` (its variables' prefix, CMK_KEYVAULT_PORT, and its SQLite
    file in the data directory, keyvault.db) and, by declaring `port` again, its default port."""

    SERVICE: ClassVar[str] = ""

    data_dir: Path = setting(
        Path(".cmk"), env="CMK_DATA_DIR", help="where the database, key files and credentials are kept"
    )
    host: str = setting("127.0.0.1", env="CMK_{SERVICE}_HOST", help="address to listen on")
    port: int = port_setting(0)
    issuer_base: str = setting(
        "https://login.microsoftonline.com", env="CMK_ISSUER_BASE", help="the base URL of the tokens' issuer"
    )
    clock_skew: timedelta = setting(
        timedelta(seconds=30),
        env="CMK_CLOCK_SKEW_SECONDS",
        help="how far a token's times may be off this service's clock and still be accepted",
    )
    tls: TlsConfig = group(TlsConfig)
    log_level: str = setting("INFO", env="CMK_LOG_LEVEL", help="DEBUG, INFO, WARNING or ERROR")
    metrics_port: int | None = setting(
        None, env="CMK_{SERVICE}_METRICS_PORT", help="serve Prometheus metrics on this port (0: a free one)"
    )
    metrics_host: str = setting(
        "127.0.0.1",
        env="CMK_METRICS_HOST",
        help="address metrics listen on (plain HTTP); expose them only on purpose",
    )
    database_url: str = setting(
        "",
        env="CMK_DATABASE_URL",
        help="postgresql://USER@HOST:PORT/DATABASE: keep the tables there, shared by any number of replicas"
        " (default: a SQLite file in the data directory, for one process)",
    )
    dev_time_control: bool = setting(
        False, env="CMK_DEV_TIME_CONTROL", help="let the operator move the clock (tests only)"
    )

    def __post_init__(self) -> None:
        check_database_url(self.database_url)
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0-65535, not {self.port}")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ConfigError(f"the metrics port must be 0-65535, not {self.metrics_port}")

    @property
    def database_path(self) -> Path:
        return self.data_dir / f"{self.SERVICE.lower()}.db"

    @property
    def database_location(self) -> str | Path:
        """Where the store is: the PostgreSQL URL, or else the SQLite file."""
        return self.database_url or self.database_path

    @classmethod
    def load(cls, env: Mapping[str, str], given: Mapping[str, str] | None = None, *, with_flags: bool = True) -> Self:
        """The settings from the variables in `env`, overlaid with `given` (a command line's
        or a launcher's values, keyed by the same variable names; one that names no setting
        of this service is refused, so that a misspelt name cannot pass unnoticed). Messages name
        each variable's flag too, unless `with_flags` is False (a start that takes no flags:
        python -m cmk_trio.<service>)."""
        given = dict(given or {})
        known = variables(cls)
        unknown = sorted(set(given) - known)
        if unknown:
            raise ConfigError(f"not a setting of the {cls.SERVICE.lower()} service: {', '.join(unknown)}")
        values = read(cls, {**env, **given}, cls.SERVICE, with_flags=with_flags)
        for f in _all_settings(cls):
            if f.name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                flags = [o.flag for o in options(cls) if o.env == _env(f, cls.SERVICE)] if with_flags else []
                raise ConfigError(
                    f"the {cls.SERVICE.lower()} service needs its {f.name.replace('_', ' ')}: set "
                    + " or ".join([_env(f, cls.SERVICE), *flags])
                )
        return cls(**values)


def _all_settings(cls: type[DataclassInstance]) -> Iterator[dataclasses.Field[Any]]:  # (fields of any type)
    for f, kind, option in _settings(cls):
        if option is None:
            yield from _all_settings(kind)
        else:
            yield f


def variables(cls: type[DataclassInstance]) -> set[str]:
    """Every variable the settings of `cls` read (those its loaders read besides included)."""
    prefix = getattr(cls, "SERVICE", "")
    found = set()
    for f in _all_settings(cls):
        option: Setting = f.metadata[SETTING]
        found |= {name.replace("{SERVICE}", prefix) for name in (option.env, *option.also)}
    return found


def _env(f: dataclasses.Field[Any], service: str) -> str:  # (a field of any type)
    option: Setting = f.metadata[SETTING]
    return option.env.replace("{SERVICE}", service)
