"""What identity's HTTP door says in Entra ID's own words, for clients written against it
(msal, azure-identity, @azure/identity): a refusal's body as Entra's token endpoint writes
it (RFC 6749's `error` and `error_description`, the AADSTS code in front of the description
and in `error_codes`, `timestamp`, `trace_id`, `correlation_id`), with our stable `reason`
beside them; and the answer to msal's instance discovery.

An AADSTS code names the same failure Entra would report, so that code which looks for one
(a wrong secret is 7000215, an expired one 7000222) reads ours the same way. Two places say
less than Entra does, on purpose: an unknown client and a wrong secret are both 7000215 (Entra
tells them apart as 700016 and 7000215, which lets anyone learn which client ids exist), and
a paused sign-in is 50053 whatever paused it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from cmk_trio.rpckit.reasons import Reason

CORRELATION_HEADER = "client-request-id"
"""The header msal sends its correlation id in (and Entra echoes)."""
TRACE_HEADER = "x-ms-request-id"
"""Entra's header for its trace id (ours: the request id)."""

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

AADSTS_BY_REASON: Mapping[Reason, int] = {
    Reason.INVALID_CLIENT_CREDENTIALS: 7000215,  # invalid client secret (and, here, an unknown client)
    Reason.CLIENT_SECRET_EXPIRED: 7000222,  # the client secret keys are expired
    Reason.PRINCIPAL_DISABLED: 7000112,  # the application is disabled
    Reason.AUDIENCE_UNKNOWN: 500011,  # the resource principal was not found in the tenant
    Reason.TENANT_NOT_FOUND: 90002,  # tenant not found
    Reason.UUID_MALFORMED: 900023,  # the tenant (or client) identifier is not valid
    Reason.FIELD_REQUIRED: 900144,  # the request body must contain a parameter
    Reason.SIGN_IN_THROTTLED: 50053,  # sign-in locked after too many failures
    Reason.SIGN_INS_BUSY: 50196,  # the server ended the request: too many at once
    Reason.AUTHORITY_UNKNOWN: 50049,  # unknown or invalid instance
    Reason.HTTP_METHOD_NOT_ALLOWED: 900561,  # the endpoint accepts other methods only
}
"""The AADSTS code of a refusal whose reason says all (others go by their OAuth error)."""

AADSTS_BY_ERROR: Mapping[str, int] = {
    "invalid_scope": 70011,  # the scope is not valid
    "unsupported_grant_type": 70003,  # the grant type is not supported
    "unsupported_response_type": 700054,  # the response type is not enabled
    "invalid_client": 7000215,
    "unauthorized_client": 700016,
    "temporarily_unavailable": 90033,  # a transient error: try again
}
"""The AADSTS code of a refusal by its OAuth error, where its reason does not decide it."""

MALFORMED = 9002313
"""Invalid request: malformed or invalid (Entra's code for a request it cannot read)."""
INTERNAL = 90033


def aadsts_code(error: str, reason: Reason) -> int:
    """The AADSTS code Entra would give this refusal."""
    return AADSTS_BY_REASON.get(reason) or AADSTS_BY_ERROR.get(error) or MALFORMED


def correlation_id(headers: Mapping[str, str]) -> str:
    """The client's correlation id (msal's client-request-id) if it sent a GUID, else a new one."""
    sent = headers.get(CORRELATION_HEADER, "")
    return sent.lower() if _GUID.fullmatch(sent) else str(uuid.uuid4())


@dataclass(frozen=True)
class Said:
    """Who a refusal is for: the request id (Entra's trace id), the correlation id and the time."""

    trace_id: str
    correlation_id: str
    at: datetime

    @property
    def timestamp(self) -> str:
        return self.at.strftime("%Y-%m-%d %H:%M:%SZ")


def error_body(error: str, reason: Reason, description: str, said: Said) -> dict[str, object]:
    """A refusal as Entra's token endpoint writes it, with our reason."""
    code = aadsts_code(error, reason)
    return {
        "error": error,
        "error_description": f"AADSTS{code}: {description} Trace ID: {said.trace_id} Correlation ID:"
        f" {said.correlation_id} Timestamp: {said.timestamp}",
        "error_codes": [code],
        "timestamp": said.timestamp,
        "trace_id": said.trace_id,
        "correlation_id": said.correlation_id,
        "reason": reason.value,
    }


def instance_discovery(authorization_endpoint: str, ours: set[str], public_base: str) -> dict[str, object] | None:
    """msal's instance discovery (`GET /common/discovery/instance?authorization_endpoint=...`)
    about an authority: where its tenant's discovery document is, when the authority's host
    is one of `ours` (msal names it without its port, so the answer points at `public_base`,
    the door as clients reach it); None for any other host (Entra's invalid_instance)."""
    asked = urlsplit(authorization_endpoint)
    segments = [s for s in asked.path.split("/") if s]
    if asked.scheme != "https" or (asked.hostname or "").lower() not in ours or not segments:
        return None
    host = urlsplit(public_base).hostname or ""
    return {
        "tenant_discovery_endpoint": f"{public_base}/{segments[0]}/v2.0/.well-known/openid-configuration",
        "api-version": "1.1",
        "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": sorted({host, *ours})}],
    }
