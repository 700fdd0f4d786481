"""Azure Resource Manager's envelope, as its clients read it: the api-versions each provider
accepts, the error body (`{"error": {"code", "message", "target", "details",
"additionalInfo"}}`, our stable reason carried in `additionalInfo`), the status and code of
each refusal the services give, and a listing's `nextLink`.

A refusal comes from the service that decided it (a gRPC error with its reason); here it only
takes ARM's shape. The codes are the ones ARM and the resource providers answer with for the
same failure (AuthorizationFailed, ResourceGroupNotFound, ...), so that code which looks for
one reads ours the same way."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast
from urllib.parse import urlencode

from aiohttp import web
from google.protobuf import timestamp_pb2

from cmk_trio.rpckit import errors
from cmk_trio.rpckit.json_input import JsonObject
from cmk_trio.rpckit.reasons import Reason

API_VERSIONS: Mapping[str, tuple[str, ...]] = {
    # Newest first; the SDKs and the az CLI send one of these (their _configuration.py).
    "Microsoft.Resources": ("2025-04-01", "2025-03-01", "2024-11-01", "2024-07-01", "2024-03-01", "2023-07-01",
                            "2022-09-01", "2021-04-01", "2021-01-01", "2020-10-01", "2020-06-01", "2019-10-01"),
    # A subscription's resources (GET /subscriptions/{s}/resources): what azure-mgmt-keyvault's
    # vaults.list() asks with 2015-11-01.
    "resources": ("2025-04-01", "2024-11-01", "2024-07-01", "2024-03-01", "2023-07-01", "2022-09-01", "2021-04-01",
                  "2019-10-01", "2015-11-01"),
    "subscriptions": ("2022-12-01", "2021-01-01", "2020-01-01", "2019-11-01", "2019-06-01", "2016-06-01"),
    "Microsoft.KeyVault": ("2026-05-15", "2026-02-01", "2025-05-01", "2024-12-01-preview", "2024-11-01",
                           "2024-04-01-preview", "2023-07-01", "2023-02-01", "2022-07-01", "2021-10-01", "2019-09-01"),
    "Microsoft.CognitiveServices": ("2026-05-15-preview", "2025-09-01", "2025-06-01", "2025-04-01-preview",
                                    "2024-10-01", "2024-06-01-preview", "2023-05-01", "2022-12-01", "2021-10-01",
                                    "2017-04-18"),
    "Microsoft.Authorization": ("2022-05-01-preview", "2022-04-01", "2020-10-01-preview", "2020-04-01-preview",
                                "2018-09-01-preview", "2018-01-01-preview", "2015-07-01"),
    "metadata": ("2022-09-01", "2020-06-01", "2019-05-01"),
}  # fmt: skip
"""The api-versions each provider (and the subscriptions, tenants and metadata endpoints)
accepts. The shapes we answer are the same in all of them, for what we serve."""

REASON_INFO_TYPE = "CmkTrioReason"
"""The `additionalInfo` entry that carries our stable reason and the refusal's facts."""


class ArmError(Exception):
    """A refusal in ARM's words: its status, code, message and, where one field is to blame,
    its target; `reason` is our stable reason, carried along."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        reason: Reason,
        *,
        target: str | None = None,
        facts: Mapping[str, str] | None = None,
        retry_after: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.reason = status, code, message, reason
        self.target, self.facts, self.retry_after = target, dict(facts or {}), retry_after

    def body(self) -> dict[str, object]:
        info = {"reason": self.reason.value, **{k: v for k, v in self.facts.items() if k != "domain"}}
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "target": self.target,
                "details": [],
                "additionalInfo": [{"type": REASON_INFO_TYPE, "info": info}],
            }
        }

    def response(self) -> web.Response:
        response = web.json_response(self.body(), status=self.status)
        if self.retry_after:
            response.headers["Retry-After"] = self.retry_after
        return response


def check_api_version(request: web.Request, provider: str) -> str:
    """The request's api-version, if `provider` accepts it; else ARM's own refusal."""
    version = request.query.get("api-version", "")
    if not version:
        raise ArmError(400, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is"
                       " required for all requests.", Reason.FIELD_REQUIRED, target="api-version")  # fmt: skip
    accepted = API_VERSIONS[provider]
    if version not in accepted:
        kind = "NoRegisteredProviderFound" if provider.startswith("Microsoft.") else "InvalidApiVersionParameter"
        raise ArmError(
            400, kind,
            f"No registered resource provider found for location and API version '{version}'. The supported"
            f" api-versions are '{', '.join(accepted)}'."
            if kind == "NoRegisteredProviderFound"
            else f"The api-version '{version}' is invalid. The supported versions are '{', '.join(accepted)}'.",
            Reason.FIELD_INVALID, target="api-version",
        )  # fmt: skip
    return version


NOT_FOUND_CODES: Mapping[Reason, str] = {
    Reason.SUBSCRIPTION_NOT_FOUND: "SubscriptionNotFound",
    Reason.TENANT_NOT_FOUND: "TenantNotFound",
    Reason.RESOURCE_GROUP_NOT_FOUND: "ResourceGroupNotFound",
    Reason.ROLE_ASSIGNMENT_NOT_FOUND: "RoleAssignmentNotFound",
    Reason.PRINCIPAL_NOT_FOUND: "PrincipalNotFound",
    Reason.DELETED_VAULT_NOT_FOUND: "DeletedVaultNotFound",
    Reason.ACCESS_POLICY_NOT_FOUND: "AccessPolicyNotFound",
}
"""ARM's code for each missing thing it names; anything else missing is ResourceNotFound."""

CONFLICT_CODES: Mapping[Reason, str] = {
    Reason.RESOURCE_GROUP_EXISTS: "ResourceGroupExists",
    Reason.ROLE_ASSIGNMENT_EXISTS: "RoleAssignmentExists",
    Reason.VAULT_NAME_TAKEN: "VaultAlreadyExists",
    Reason.SPEECH_RESOURCE_EXISTS: "CustomDomainInUse",
}

UNAUTHENTICATED_CODES: Mapping[Reason, str] = {
    Reason.TOKEN_MISSING: "AuthenticationFailed",
    Reason.TOKEN_EXPIRED: "ExpiredAuthenticationToken",
    Reason.TOKEN_AUDIENCE_INVALID: "InvalidAuthenticationTokenAudience",
    Reason.TOKEN_ISSUER_INVALID: "InvalidAuthenticationTokenTenant",
    Reason.TOKEN_TENANT_MISMATCH: "InvalidAuthenticationTokenTenant",
}


def arm_error_of(exc: errors.ServiceError) -> ArmError:
    """A service's refusal in ARM's shape."""
    reason, facts = exc.reason, exc.metadata
    target = facts.get("field")

    def made(status: int, code: str) -> ArmError:
        return ArmError(status, code, exc.message, reason, target=target, facts=facts,
                        retry_after=facts.get("retry_after_seconds"))  # fmt: skip

    if isinstance(exc, errors.Unauthenticated):
        return made(401, UNAUTHENTICATED_CODES.get(reason, "InvalidAuthenticationToken"))
    if isinstance(exc, errors.PermissionDenied):
        return made(403, "AuthorizationFailed")
    if isinstance(exc, errors.NotFound):  # (a principal named in a request body: ARM's 400)
        status = 400 if reason is Reason.PRINCIPAL_NOT_FOUND else 404
        return made(status, NOT_FOUND_CODES.get(reason, "ResourceNotFound"))
    if isinstance(exc, errors.AlreadyExists):
        return made(409, CONFLICT_CODES.get(reason, "Conflict"))
    if isinstance(exc, errors.InvalidArgument):
        return made(400, "InvalidRequestContent" if reason is Reason.REQUEST_MALFORMED else "BadRequest")
    if isinstance(exc, errors.FailedPrecondition):
        return made(409 if reason.value.endswith(("_EXISTS", "_DELETED")) else 400, "BadRequest")
    if isinstance(exc, errors.Aborted):
        return made(409, "Conflict")
    if isinstance(exc, errors.ResourceExhausted):
        return made(429, "TooManyRequests")
    if isinstance(exc, errors.Unavailable):
        return made(503, "ServiceUnavailable")
    return ArmError(500, "InternalServerError", "internal error; the service log has the details", Reason.INTERNAL)


def iso_time(stamp: timestamp_pb2.Timestamp) -> str | None:
    """A time as ARM writes one (ISO 8601, UTC), or None when it is not set."""
    return stamp.ToDatetime().isoformat() + "Z" if stamp.seconds or stamp.nanos else None


def json_object(value: object, where: str) -> JsonObject:
    """`value` if it is a JSON object, else ARM's refusal naming `where`."""
    if not isinstance(value, dict):
        raise ArmError(400, "BadRequest", f"{where} must be a JSON object.", Reason.FIELD_INVALID, target=where)
    return cast(JsonObject, value)


def listing(request: web.Request, items: Sequence[Mapping[str, object]], next_token: str = "") -> web.Response:
    """A page of a listing as ARM writes it: `value`, and `nextLink` (the same request with
    `$skiptoken`) only when a page follows."""
    body: dict[str, object] = {"value": list(items)}
    if next_token:
        query = {k: v for k, v in request.query.items() if k != "$skiptoken"}
        body["nextLink"] = f"https://{request.host}{request.path}?{urlencode({**query, '$skiptoken': next_token})}"
    return web.json_response(body)
