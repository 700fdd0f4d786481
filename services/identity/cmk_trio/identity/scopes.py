"""Azure-style scopes and resource ids: parsing and the "is under" relation."""

from __future__ import annotations

import re

from cmk_trio.rpckit.errors import invalid_field
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.validation import require_uuid

_SCOPE = re.compile(
    r"/subscriptions/(?P<sub>[0-9A-Fa-f-]{36})"
    r"(?:/resourceGroups/[A-Za-z0-9._()-]{1,90}"
    r"(?:/providers/[A-Za-z][A-Za-z0-9.]{0,99}(?:/[A-Za-z0-9][A-Za-z0-9._-]{0,99}/[A-Za-z0-9][A-Za-z0-9._-]{0,99})+)?)?",
    re.IGNORECASE,  # Azure resource ids compare case-insensitively
)
_RESOURCE = re.compile(
    r"/subscriptions/(?P<sub>[0-9A-Fa-f-]{36})/resourceGroups/[A-Za-z0-9._()-]{1,90}"
    r"/providers/[A-Za-z][A-Za-z0-9.]{0,99}(?:/[A-Za-z0-9][A-Za-z0-9._-]{0,99}/[A-Za-z0-9][A-Za-z0-9._-]{0,99})+",
    re.IGNORECASE,
)
MAX_SCOPE = 1024


def parse_scope(field: str, scope: str) -> tuple[str, str]:
    """(canonical scope, subscription id) of a role scope: a subscription, or a resource
    group or resource under one."""
    return _parse(field, scope, _SCOPE, "/subscriptions/{id}[/resourceGroups/{rg}[/providers/...]]")


def parse_resource_id(field: str, resource_id: str) -> tuple[str, str]:
    """(canonical resource id, subscription id) of a full resource id."""
    return _parse(
        field, resource_id, _RESOURCE, "/subscriptions/{id}/resourceGroups/{rg}/providers/{namespace}/{type}/{name}"
    )


def _parse(field: str, value: str, pattern: re.Pattern[str], example: str) -> tuple[str, str]:
    if not value:
        raise invalid_field(field, Reason.FIELD_REQUIRED, "is required")
    if len(value) > MAX_SCOPE:
        raise invalid_field(field, Reason.FIELD_TOO_LONG, f"must be at most {MAX_SCOPE} characters")
    trimmed = value.rstrip("/")
    match = pattern.fullmatch(trimmed)
    if match is None:
        raise invalid_field(field, Reason.SCOPE_MALFORMED, f"must look like {example}")
    subscription_id = require_uuid(field, match.group("sub").lower())
    canonical = f"/subscriptions/{subscription_id}{trimmed[len('/subscriptions/') + 36 :]}"
    return canonical, subscription_id


RESOURCE_PROVIDERS = {"speech": "Microsoft.CognitiveServices", "keyvault": "Microsoft.KeyVault"}
"""The resource provider whose resources each platform service owns (the one it may make
managed identities for)."""


def provider_of(resource_id: str) -> str:
    """The provider namespace of a canonical resource id ("Microsoft.KeyVault")."""
    return resource_id.split("/")[6]


def is_under(scope: str, ancestor: str) -> bool:
    """True if `scope` is `ancestor` or lies below it (case-insensitive, whole segments)."""
    s, a = scope.rstrip("/").lower(), ancestor.rstrip("/").lower()
    return s == a or s.startswith(a + "/")
