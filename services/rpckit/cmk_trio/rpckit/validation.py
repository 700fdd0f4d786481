"""Checks of request fields that every service needs. Each failure is an InvalidArgument
that names the field, with a stable reason."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from google.protobuf.field_mask_pb2 import FieldMask

from cmk_trio.rpckit.errors import invalid_field
from cmk_trio.rpckit.reasons import Reason

MAX_DISPLAY_NAME = 256


def require_uuid(field: str, value: str) -> str:
    """The canonical (lower-case) form of a UUID field."""
    if not value:
        raise invalid_field(field, Reason.FIELD_REQUIRED, "is required")
    if len(value) > 36:
        raise invalid_field(field, Reason.UUID_MALFORMED, "must be a UUID (36 characters)")
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        raise invalid_field(
            field, Reason.UUID_MALFORMED, "must be a UUID such as 00000000-0000-0000-0000-000000000000"
        ) from None
    canonical = str(parsed)
    if canonical != value.lower():
        raise invalid_field(field, Reason.UUID_MALFORMED, "must be a UUID in its hyphenated form")
    return canonical


def display_name(field: str, value: str, *, required: bool = True, limit: int = MAX_DISPLAY_NAME) -> str:
    """A human-readable name: printable characters, no leading or trailing space."""
    if not value:
        if required:
            raise invalid_field(field, Reason.FIELD_REQUIRED, "is required")
        return value
    if len(value) > limit:
        raise invalid_field(field, Reason.FIELD_TOO_LONG, f"must be at most {limit} characters")
    if not value.isprintable() or value != value.strip():
        raise invalid_field(field, Reason.FIELD_INVALID, "must be printable, without leading or trailing spaces")
    return value


def enum_value(field: str, value: int, known: Iterable[int]) -> int:
    """An enum number that is set and known to this API version."""
    allowed = set(known) - {0}
    if value not in allowed:
        raise invalid_field(field, Reason.ENUM_UNKNOWN, f"must be one of the known values, not {value}")
    return value


def name_parts(field: str, value: str, pattern: re.Pattern[str], example: str) -> tuple[str, ...]:
    """The groups of a resource name matched against `pattern` (UUID groups canonicalised)."""
    if not value:
        raise invalid_field(field, Reason.FIELD_REQUIRED, "is required")
    if len(value) > 512:
        raise invalid_field(field, Reason.FIELD_TOO_LONG, "is too long for a resource name")
    match = pattern.fullmatch(value)
    if match is None:
        raise invalid_field(field, Reason.NAME_MALFORMED, f"must look like {example}")
    return tuple(require_uuid(field, group) for group in match.groups())


def int_range(field: str, value: int, low: int, high: int, default: int) -> int:
    """An integer within [low, high]; 0 means `default`."""
    if value == 0:
        return default
    if not low <= value <= high:
        raise invalid_field(field, Reason.FIELD_INVALID, f"must be between {low} and {high}")
    return value


# Azure Resource Manager's rules for the names every resource id carries.
RESOURCE_GROUP = re.compile(r"[-\w.()]{0,89}[-\w()]")
LOCATION = re.compile(r"[a-z][a-z0-9]{1,63}")


def resource_group(field: str, value: str) -> str:
    """A resource group name: 1-90 letters, digits, and -_.() not ending in a dot."""
    if not value or not RESOURCE_GROUP.fullmatch(value):
        raise invalid_field(field, Reason.FIELD_INVALID, "must be 1-90 letters, digits, -_.()")
    return value


RESOURCE_GROUP_NAME = re.compile(r"[-A-Za-z0-9_.()]{0,89}[-A-Za-z0-9_()]")


def resource_group_name(field: str, value: str) -> str:
    """The name of a resource group kept by the directory: 1-90 ASCII letters, digits, and
    -_.() not ending in a dot (Azure allows other Unicode letters too; role scopes here do not)."""
    if not value or not RESOURCE_GROUP_NAME.fullmatch(value):
        raise invalid_field(field, Reason.FIELD_INVALID, "must be 1-90 letters, digits, -_.() not ending in '.'")
    return value


def location(field: str, value: str) -> str:
    """A region name such as westeurope."""
    if not LOCATION.fullmatch(value):
        raise invalid_field(field, Reason.FIELD_INVALID, "must be a region name such as westeurope")
    return value


MAX_ARM_TAGS, MAX_ARM_TAG_NAME, MAX_ARM_TAG_VALUE = 50, 512, 256
_ARM_TAG_NAME_FORBIDDEN = set("<>%&\\?/")


def arm_tags(field: str, tags: Mapping[str, str]) -> dict[str, str]:
    """Azure Resource Manager's tags: at most 50; names 1-512 characters without any of
    < > % & \\ ? /, values at most 256."""
    if len(tags) > MAX_ARM_TAGS:
        raise invalid_field(field, Reason.TAGS_INVALID, f"at most {MAX_ARM_TAGS} tags")
    for name, value in tags.items():
        if not 0 < len(name) <= MAX_ARM_TAG_NAME or _ARM_TAG_NAME_FORBIDDEN & set(name):
            raise invalid_field(
                field, Reason.TAGS_INVALID, f"tag names are 1-{MAX_ARM_TAG_NAME} characters, none of < > % & \\ ? /"
            )
        if len(value) > MAX_ARM_TAG_VALUE:
            raise invalid_field(field, Reason.TAGS_INVALID, f"tag values are at most {MAX_ARM_TAG_VALUE} characters")
    return dict(tags)


_SUBSCRIPTION = re.compile(r"subscriptions/([^/]{1,64})")
_CMK_APPROVAL = re.compile(r"subscriptions/([^/]{1,64})/cmkApproval")


def subscription_parent(field: str, value: str) -> str:
    """The subscription id of a parent "subscriptions/{subscription_id}"."""
    (found,) = name_parts(field, value, _SUBSCRIPTION, "subscriptions/{subscription_id}")
    return found


def cmk_approval_subscription(field: str, value: str) -> str:
    """The subscription id of a CMK approval's name "subscriptions/{subscription_id}/cmkApproval"."""
    (found,) = name_parts(field, value, _CMK_APPROVAL, "subscriptions/{subscription_id}/cmkApproval")
    return found


def mask_paths(mask: FieldMask, allowed: set[str]) -> set[str]:
    """The fields an update_mask names, each one that may be changed; an empty mask is refused."""
    paths = set(mask.paths)
    if not paths or paths - allowed:
        raise invalid_field(
            "update_mask", Reason.UPDATE_MASK_INVALID, f"name the fields to change among: {', '.join(sorted(allowed))}"
        )
    return paths
