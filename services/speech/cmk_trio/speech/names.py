"""Speech resource ids, parsed and made in one place (Azure's rules for a Cognitive Services
account: /subscriptions/{id}/resourceGroups/{rg}/providers/Microsoft.CognitiveServices/accounts/{name})."""

from __future__ import annotations

import re

from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.validation import require_uuid
from cmk_trio.speech.errors import invalid_field

ACCOUNT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}[A-Za-z0-9]")
RESOURCE_ID = re.compile(
    r"/subscriptions/([0-9A-Fa-f-]{36})/resourceGroups/([-\w.()]{1,90})/providers/"
    r"Microsoft\.CognitiveServices/accounts/([A-Za-z0-9-]{2,64})",
    re.IGNORECASE,
)
MAX_RESOURCE_ID = 512


def account_name(field: str, value: str) -> str:
    """A Cognitive Services account name: 2-64 letters, digits and hyphens."""
    if not ACCOUNT_NAME.fullmatch(value):
        raise invalid_field(field, Reason.ACCOUNT_NAME_INVALID, "must be 2-64 letters, digits and hyphens")
    return value


def make_resource_id(subscription_id: str, resource_group: str, account_name: str) -> str:
    return (
        f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}"
        f"/providers/Microsoft.CognitiveServices/accounts/{account_name}"
    )


def parse_resource_id(field: str, value: str) -> str:
    """A speech resource id, with its subscription id canonicalised."""
    if not value:
        raise invalid_field(field, Reason.FIELD_REQUIRED, "is required")
    match = RESOURCE_ID.fullmatch(value.rstrip("/"))
    if match is None or len(value) > MAX_RESOURCE_ID:
        raise invalid_field(
            field, Reason.RESOURCE_ID_MALFORMED,
            "must be /subscriptions/{id}/resourceGroups/{rg}/providers/Microsoft.CognitiveServices/accounts/{name}",
        )  # fmt: skip
    return make_resource_id(require_uuid(field, match.group(1).lower()), match.group(2), match.group(3))
