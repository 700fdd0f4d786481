"""The identity API's resource names, parsed in one place: tenants/{tenant_id},
subscriptions/{subscription_id}, tenants/{tenant_id}/principals/{object_id}, its
secrets/{secret_id}, and roleAssignments/{role_assignment_id}. Each id is a UUID."""

from __future__ import annotations

import re

from cmk_trio.rpckit.errors import invalid_field
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.validation import name_parts, require_uuid, resource_group_name, subscription_parent

_ID = r"([^/]{1,64})"  # any segment; require_uuid (in name_parts) then says what is wrong with it
TENANT = re.compile(rf"tenants/{_ID}")
PRINCIPAL = re.compile(rf"tenants/{_ID}/principals/{_ID}")
SECRET = re.compile(rf"tenants/{_ID}/principals/{_ID}/secrets/{_ID}")
ROLE_ASSIGNMENT = re.compile(rf"roleAssignments/{_ID}")
RESOURCE_GROUP = re.compile(r"/subscriptions/([^/]{1,64})/resourceGroups/([^/]{1,90})", re.IGNORECASE)
SUBSCRIPTION_ID = re.compile(r"/subscriptions/([^/]{1,64})", re.IGNORECASE)
SIGNING_KEY = re.compile(r"signingKeys/([A-Za-z0-9_-]{1,128})")


def tenant_id(field: str, name: str) -> str:
    (found,) = name_parts(field, name, TENANT, "tenants/{tenant_id}")
    return found


def subscription_id(field: str, name: str) -> str:
    return subscription_parent(field, name)  # (the speech and key vault APIs' parents read the same)


def principal(field: str, name: str) -> tuple[str, str]:
    """The tenant id and object id of a principal's name."""
    tenant, object_id = name_parts(field, name, PRINCIPAL, "tenants/{tenant_id}/principals/{object_id}")
    return tenant, object_id


def secret(field: str, name: str) -> tuple[str, str, str]:
    """The tenant id, object id and secret id of a client secret's name."""
    tenant, object_id, secret_id = name_parts(
        field, name, SECRET, "tenants/{tenant_id}/principals/{object_id}/secrets/{secret_id}"
    )
    return tenant, object_id, secret_id


def role_assignment_id(field: str, name: str) -> str:
    (found,) = name_parts(field, name, ROLE_ASSIGNMENT, "roleAssignments/{role_assignment_id}")
    return found


def resource_group(field: str, name: str) -> tuple[str, str]:
    """The subscription id and group name of "/subscriptions/{s}/resourceGroups/{rg}" (the
    id Azure Resource Manager gives a group; "subscriptions" and "resourceGroups" in any case)."""
    match = RESOURCE_GROUP.fullmatch((name or "").rstrip("/"))
    if match is None:
        raise invalid_field(field, Reason.NAME_MALFORMED, "must look like /subscriptions/{id}/resourceGroups/{name}")
    return require_uuid(field, match.group(1).lower()), resource_group_name(field, match.group(2))


def subscription_resource_id(field: str, name: str) -> str:
    """The subscription id of "/subscriptions/{subscription_id}"."""
    match = SUBSCRIPTION_ID.fullmatch((name or "").rstrip("/"))
    if match is None:
        raise invalid_field(field, Reason.NAME_MALFORMED, "must look like /subscriptions/{subscription_id}")
    return require_uuid(field, match.group(1).lower())


def signing_key(field: str, name: str) -> str:
    """The kid of a signing key's name, signingKeys/{kid}."""
    match = SIGNING_KEY.fullmatch(name or "")
    if match is None:
        raise invalid_field(field, Reason.NAME_MALFORMED, "must look like signingKeys/{kid}")
    return match.group(1)
