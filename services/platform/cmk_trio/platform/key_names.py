"""The key vault's naming rules, in one place for everyone who names a vault or a key: the
key vault itself, speech (which stores key identifiers) and any other client. They are Azure
Key Vault's rules, so that identifiers are byte-compatible with the real format."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from cmk_trio.rpckit.errors import invalid_field
from cmk_trio.rpckit.reasons import Reason

VAULT_NAME = re.compile(r"[A-Za-z](?!.*--)[A-Za-z0-9-]{1,22}[A-Za-z0-9]")
KEY_NAME = re.compile(r"[0-9A-Za-z-]{1,127}")
VERSION = re.compile(r"[0-9a-f]{32}")
MAX_KEY_ID = 512


@dataclass(frozen=True, slots=True)
class KeyRef:
    """A key, and optionally one version of it, as a request names it (canonical: the vault
    name and the version in lower case)."""

    vault_name: str
    key_name: str
    version: str | None = None


def vault_name(field: str, value: str) -> str:
    """The canonical (lower-case) vault name, by Azure's rules."""
    if not value:
        raise invalid_field(field, Reason.FIELD_REQUIRED, "is required")
    if not VAULT_NAME.fullmatch(value):
        raise invalid_field(
            field,
            Reason.VAULT_NAME_INVALID,
            "must be 3-24 letters, digits and hyphens, start with a letter, end with a letter or digit, "
            "and have no two hyphens in a row",
        )
    return value.lower()


def key_name(field: str, value: str) -> str:
    """A key name as given (key names compare without case, but keep theirs)."""
    if not value:
        raise invalid_field(field, Reason.FIELD_REQUIRED, "is required")
    if not KEY_NAME.fullmatch(value):
        raise invalid_field(field, Reason.KEY_NAME_INVALID, "must be 1-127 letters, digits and hyphens")
    return value


def key_version(field: str, value: str) -> str:
    """A key version id: 32 hexadecimal characters, canonical in lower case."""
    if not VERSION.fullmatch(value.lower()):
        raise invalid_field(field, Reason.KEY_URI_MALFORMED, "a key version is 32 hexadecimal characters")
    return value.lower()


def key_id(vault: str, key: str, version: str | None, dns_suffix: str) -> str:
    """The key identifier URI of a key (versionless when `version` is None)."""
    return f"https://{vault}.{dns_suffix}/keys/{key}" + (f"/{version}" if version else "")


def split_key_id(value: str, dns_suffix: str, collection: str = "keys") -> tuple[str, str, str | None] | None:
    """The vault, name and version (None if absent) of a key identifier URI
    https://{vault}.{suffix}/keys/{name}[/{version}] (or, with `collection` "secrets", of a
    secret's), unchecked; None if it is not one."""
    suffix = re.escape(dns_suffix.lower())
    match = re.fullmatch(
        rf"https://([^./]+)\.{suffix}(?::443)?/{collection}/([^/]+)(?:/([^/]*))?/?", value, re.IGNORECASE
    )
    return (match.group(1), match.group(2), match.group(3) or None) if match else None


def _parse_ref(field: str, value: str, dns_suffix: str, collection: str) -> tuple[str, str, str | None]:
    what = collection[:-1]
    if not value:
        raise invalid_field(field, Reason.FIELD_REQUIRED, "is required")
    if len(value) > MAX_KEY_ID:
        raise invalid_field(field, Reason.FIELD_TOO_LONG, f"is too long for a {what} identifier")
    parts = split_key_id(value, dns_suffix, collection)
    if parts is None:
        named = re.fullmatch(rf"vaults/([^/]+)/{collection}/([^/]+)(?:/versions/([^/]+))?", value)
        parts = (named.group(1), named.group(2), named.group(3) or None) if named else None
    if parts is None:
        raise invalid_field(
            field,
            Reason.KEY_URI_MALFORMED if collection == "keys" else Reason.SECRET_URI_MALFORMED,
            f"must be a {what} identifier https://{{vault}}.{dns_suffix}/{collection}/{{name}}[/{{version}}] "
            f"or vaults/{{vault}}/{collection}/{{name}}[/versions/{{version}}]",
        )
    vault, name, version = parts
    version = key_version(field, version) if version is not None else None
    checked = key_name(field, name) if collection == "keys" else secret_name(field, name)
    return vault_name(field, vault), checked, version


@functools.lru_cache(maxsize=4096)
def parse_key_ref(field: str, value: str, dns_suffix: str) -> KeyRef:
    """A key identifier URI (https://{vault}.{suffix}/keys/{name}[/{version}]) or a resource
    name (vaults/{vault}/keys/{name}[/versions/{version}]). Remembered (a busy client names
    the same few keys on every call); refusals are not, as they raise."""
    return KeyRef(*_parse_ref(field, value, dns_suffix, "keys"))


@dataclass(frozen=True, slots=True)
class SecretRef:
    """A secret, and optionally one version of it, as a request names it."""

    vault_name: str
    secret_name: str
    version: str | None = None


def secret_name(field: str, value: str) -> str:
    """A secret name as given (compared without case), by the rule of key names."""
    if not value:
        raise invalid_field(field, Reason.FIELD_REQUIRED, "is required")
    if not KEY_NAME.fullmatch(value):
        raise invalid_field(field, Reason.SECRET_NAME_INVALID, "must be 1-127 letters, digits and hyphens")
    return value


def secret_id(vault: str, name: str, version: str | None, dns_suffix: str) -> str:
    """The identifier URI of a secret (versionless when `version` is None)."""
    return f"https://{vault}.{dns_suffix}/secrets/{name}" + (f"/{version}" if version else "")


def parse_secret_ref(field: str, value: str, dns_suffix: str) -> SecretRef:
    """A secret identifier URI (https://{vault}.{suffix}/secrets/{name}[/{version}]) or a
    resource name (vaults/{vault}/secrets/{name}[/versions/{version}])."""
    return SecretRef(*_parse_ref(field, value, dns_suffix, "secrets"))
