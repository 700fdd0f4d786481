"""Microsoft.CognitiveServices: speech accounts (kind `SpeechServices`) over the speech
service's SpeechResourceService, with the caller's token.

    PUT /subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.CognitiveServices/accounts/{name}
    {"kind": "SpeechServices", "sku": {"name": "S0"}, "location": "westeurope",
     "identity": {"type": "SystemAssigned"}}
    PATCH the same with {"properties": {"encryption": {"keySource": "Microsoft.KeyVault",
     "keyVaultProperties": {"keyVaultUri": "https://contoso-cmk.vault.azure.net/", "keyName": "cmk"}}}}

The seed's rules are the speech service's, and hold here as on gRPC: an account is made with
Microsoft-managed keys only (customer-managed keys are set on an account that exists), CMK
needs the subscription's approval (asked and decided over gRPC or `cmk speech cmk-approval`:
it stays outside ARM, as Microsoft's form does), the S0 tier, an account made after the CMK
date, a vault of the same tenant and region, and the managed identity's access; setting the key
grants the account's identity get, wrapKey and unwrapKey with the caller's authority, as the
portal does. A `keyVersion` pins the account to that version; without one it follows the key's
newest version. `properties.encryption.keyStatus` (and `keyInaccessibleReason`) say whether the
key can be used now: an account whose key was revoked shows it here, and its data calls are
refused with the cause.

What is not served: other kinds than SpeechServices, user-assigned identities, tags (the
speech service keeps none), API keys (`listKeys`: the data plane takes tokens), and changing the
pricing tier; each is refused with ARM's error, never accepted silently. A deleted account is
gone at once with its data and identity (the speech service keeps no deleted accounts), so
`deletedAccounts` lists none."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from aiohttp import web

from cmk_trio.arm.envelope import ArmError, iso_time, json_object, listing
from cmk_trio.arm.front import Services, ask, body_of, require_write
from cmk_trio.arm.lookups import all_accounts, group_exists, required_location
from cmk_trio.arm.routing import Params, Router
from cmk_trio.proto.identity.v1 import identity_service_pb2_grpc as igrpc
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2 as kpb
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2_grpc as kgrpc
from cmk_trio.proto.speech.v1 import resources_pb2 as sres
from cmk_trio.proto.speech.v1 import speech_service_pb2 as spb
from cmk_trio.proto.speech.v1 import speech_service_pb2_grpc as sgrpc
from cmk_trio.rpckit import errors
from cmk_trio.rpckit.json_input import JsonObject
from cmk_trio.rpckit.reasons import Reason

PROVIDER = "Microsoft.CognitiveServices"
ACCOUNTS_IN_GROUP = (
    "/subscriptions/{subscription}/resourcegroups/{group}/providers/Microsoft.CognitiveServices/accounts"
)
ACCOUNT = ACCOUNTS_IN_GROUP + "/{account}"
IN_SUBSCRIPTION = "/subscriptions/{subscription}/providers/Microsoft.CognitiveServices"
KIND = "SpeechServices"
SKUS = {"F0": sres.F0, "S0": sres.S0}
TIERS = {sres.F0: ("F0", "Free"), sres.S0: ("S0", "Standard")}
KEY_STATUS = {sres.HEALTHY: "Healthy", sres.KEY_INACCESSIBLE: "KeyInaccessible", sres.KEY_PURGED: "KeyPurged"}


def encryption_json(e: sres.Encryption) -> dict[str, object]:
    if e.key_source != sres.CUSTOMER_MANAGED:
        return {"keySource": "Microsoft.CognitiveServices"}
    return {
        "keySource": "Microsoft.KeyVault",
        "keyVaultProperties": {"keyName": e.key_name, "keyVersion": "" if e.follow_latest_version else e.key_version,
                               "keyVaultUri": e.vault_uri, "identityClientId": None},
        "keyStatus": KEY_STATUS.get(e.status, "Unknown"),
        **({"keyInaccessibleReason": e.inaccessible_reason} if e.inaccessible_reason else {}),
    }  # fmt: skip


def account_json(r: sres.SpeechResource) -> dict[str, object]:
    name, tier = TIERS.get(r.pricing_tier, ("S0", "Standard"))
    identity: dict[str, object] = {"type": "None"}
    if r.identity.system_assigned:
        identity = {"type": "SystemAssigned", "principalId": r.identity.principal_id, "tenantId": r.identity.tenant_id}
    return {
        "id": r.name,
        "name": r.account_name,
        "type": "Microsoft.CognitiveServices/accounts",
        "kind": KIND,
        "location": r.location,
        "sku": {"name": name, "tier": tier},
        "identity": identity,
        "tags": {},
        "properties": {
            "provisioningState": "Succeeded", "endpoint": f"https://{r.location}.api.cognitive.microsoft.com/",
            "dateCreated": iso_time(r.create_time), "encryption": encryption_json(r.encryption),
            "publicNetworkAccess": "Enabled", "capabilities": [],
        },
    }  # fmt: skip


def _identity_type(body: Mapping[str, object]) -> str | None:
    """SystemAssigned, None, or None when the request does not say."""
    if body.get("identity") is None:
        return None
    kind = json_object(body["identity"], "identity").get("type")
    if not isinstance(kind, str) or kind.lower() not in {"systemassigned", "none"}:
        raise ArmError(400, "BadRequest", "identity.type must be SystemAssigned or None: user-assigned identities are"
                       " not served.", Reason.FIELD_INVALID, target="identity.type")  # fmt: skip
    return "SystemAssigned" if kind.lower() == "systemassigned" else "None"


def _no_tags(body: Mapping[str, object]) -> None:
    if body.get("tags") not in (None, {}):
        raise ArmError(400, "BadRequest", "tags are not kept for speech accounts.", Reason.FIELD_INVALID,
                       target="tags")  # fmt: skip


def _tier(body: Mapping[str, object]) -> int | None:
    if body.get("sku") is None:
        return None
    name = json_object(body["sku"], "sku").get("name")
    if not isinstance(name, str) or name.upper() not in SKUS:
        raise ArmError(400, "InvalidSkuName", "sku.name must be F0 or S0 for a speech account.", Reason.FIELD_INVALID,
                       target="sku.name")  # fmt: skip
    return SKUS[name.upper()]


def _encryption(properties: Mapping[str, object]) -> JsonObject | None:
    if properties.get("encryption") is None:
        return None
    encryption = json_object(properties["encryption"], "properties.encryption")
    source = encryption.get("keySource")
    if not isinstance(source, str) or source.lower() not in {"microsoft.keyvault", "microsoft.cognitiveservices"}:
        raise ArmError(400, "BadRequest", "properties.encryption.keySource must be Microsoft.KeyVault or"
                       " Microsoft.CognitiveServices.", Reason.FIELD_INVALID,
                       target="properties.encryption.keySource")  # fmt: skip
    return encryption


class CognitiveServicesProvider:
    """Microsoft.CognitiveServices accounts over SpeechResourceService."""

    def __init__(self, services: Services) -> None:
        self._speech = sgrpc.SpeechResourceServiceStub(services.speech)
        self._vaults = kgrpc.VaultServiceStub(services.keyvault)
        self._groups = igrpc.ResourceGroupServiceStub(services.identity)
        self._identity = services.identity

    def __call__(self, router: Router) -> None:
        add: Callable[..., None] = router.add
        add("PUT", ACCOUNT, self.put_account, "CreateAccount", PROVIDER)
        add("PATCH", ACCOUNT, self.patch_account, "UpdateAccount", PROVIDER)
        add("GET", ACCOUNT, self.get_account, "GetAccount", PROVIDER)
        add("DELETE", ACCOUNT, self.delete_account, "DeleteAccount", PROVIDER)
        add("GET", ACCOUNTS_IN_GROUP, self.list_in_group, "ListAccountsByResourceGroup", PROVIDER)
        add("GET", IN_SUBSCRIPTION + "/accounts", self.list_in_subscription, "ListAccounts", PROVIDER)
        add("GET", IN_SUBSCRIPTION + "/deletedAccounts", self.list_deleted, "ListDeletedAccounts", PROVIDER)
        add("GET", IN_SUBSCRIPTION + "/locations/{location}/resourcegroups/{group}/deletedAccounts/{account}",
            self.get_deleted, "GetDeletedAccount", PROVIDER)  # fmt: skip

    # --- one account ------------------------------------------------------------------

    def _name(self, params: Params) -> str:
        return (f"/subscriptions/{params['subscription'].lower()}/resourceGroups/{params['group']}"
                f"/providers/Microsoft.CognitiveServices/accounts/{params['account']}")  # fmt: skip

    async def _account(self, request: web.Request, params: Params) -> sres.SpeechResource:
        return await ask(request, self._speech.GetSpeechResource, spb.GetSpeechResourceRequest(name=self._name(params)))

    async def get_account(self, request: web.Request, params: Params) -> web.Response:
        return web.json_response(account_json(await self._account(request, params)))

    async def put_account(self, request: web.Request, params: Params) -> web.Response:
        body = body_of(request)
        _no_tags(body)
        kind = body.get("kind")
        if not isinstance(kind, str) or kind.lower() != KIND.lower():
            raise ArmError(400, "InvalidKind", f"kind must be {KIND}: speech accounts are the only kind served.",
                           Reason.FIELD_INVALID, target="kind")  # fmt: skip
        location = required_location(body)
        tier, identity = _tier(body), _identity_type(body)
        properties = json_object(body.get("properties", {}), "properties")
        encryption = _encryption(properties)
        try:
            existing = await self._account(request, params)
        except errors.NotFound:
            existing = None
        if existing is not None:
            if tier is not None and tier != existing.pricing_tier:
                raise ArmError(400, "BadRequest", "changing a speech account's pricing tier is not served.",
                               Reason.FIELD_INVALID, target="sku.name")  # fmt: skip
            return web.json_response(account_json(await self._change(request, existing, identity, encryption)))
        if tier is None:
            raise ArmError(400, "BadRequest", "sku.name is required.", Reason.FIELD_REQUIRED, target="sku.name")
        await group_exists(request, self._groups, params)
        wanted = sres.SpeechResource(subscription_id=params["subscription"].lower(), resource_group=params["group"],
                                     account_name=params["account"], location=location.replace(" ", "").lower(),
                                     pricing_tier=sres.PricingTier.ValueType(tier))  # fmt: skip
        if encryption is not None and str(encryption.get("keySource", "")).lower() == "microsoft.keyvault":
            wanted.encryption.key_source = sres.CUSTOMER_MANAGED  # (the service refuses it: the seed's rule)
        made = await ask(request, self._speech.CreateSpeechResource, spb.CreateSpeechResourceRequest(resource=wanted))
        if identity == "SystemAssigned":
            made = await ask(request, self._speech.AssignIdentity, spb.AssignIdentityRequest(name=made.name))
        return web.json_response(account_json(made), status=201)

    async def patch_account(self, request: web.Request, params: Params) -> web.Response:
        body = body_of(request)
        _no_tags(body)
        existing = await self._account(request, params)
        tier = _tier(body)
        if tier is not None and tier != existing.pricing_tier:
            raise ArmError(400, "BadRequest", "changing a speech account's pricing tier is not served.",
                           Reason.FIELD_INVALID, target="sku.name")  # fmt: skip
        properties = json_object(body.get("properties", {}), "properties")
        changed = await self._change(request, existing, _identity_type(body), _encryption(properties))
        return web.json_response(account_json(changed))

    async def _change(
        self, request: web.Request, account: sres.SpeechResource, identity: str | None,
        encryption: JsonObject | None,
    ) -> sres.SpeechResource:  # fmt: skip
        """The identity and then the encryption the request asks for, each one call of the
        speech service (which refuses what the seed refuses, changing nothing)."""
        before = account
        if identity == "SystemAssigned" and not account.identity.system_assigned:
            account = await ask(request, self._speech.AssignIdentity, spb.AssignIdentityRequest(name=account.name))
        if encryption is not None:
            if str(encryption["keySource"]).lower() == "microsoft.keyvault":
                account = await ask(request, self._speech.SetEncryption, await self._key_of(request, account,
                                                                                          encryption))  # fmt: skip
            elif account.encryption.key_source == sres.CUSTOMER_MANAGED:
                account = await ask(request, self._speech.DisableEncryption,
                                    spb.DisableEncryptionRequest(name=account.name))  # fmt: skip
        if identity == "None" and account.identity.system_assigned:
            # ARM asks no confirmation: removing the identity of an account under CMK makes its
            # data unreadable, as Azure warns, and the request says to do it.
            remove = spb.RemoveIdentityRequest(name=account.name, confirm_data_inaccessible=True)
            account = await ask(request, self._speech.RemoveIdentity, remove)
        if account is before:  # nothing to change: still a write, which needs its role
            await require_write(request, self._identity, account.name)
        return account

    async def _key_of(
        self, request: web.Request, account: sres.SpeechResource, encryption: JsonObject
    ) -> spb.SetEncryptionRequest:
        """SetEncryption from keyVaultProperties: the vault named by its URI (its subscription
        read from the key vault with the caller's token, as the key URI form needs), the key,
        and the version if one is given (else the account follows the key's newest version)."""
        where = "properties.encryption.keyVaultProperties"
        key = json_object(encryption.get("keyVaultProperties"), where)
        uri, name, version = key.get("keyVaultUri"), key.get("keyName"), key.get("keyVersion") or ""
        if not isinstance(uri, str) or not isinstance(name, str) or not isinstance(version, str):
            raise ArmError(400, "BadRequest", f"{where} needs keyVaultUri and keyName (and may have keyVersion).",
                           Reason.FIELD_REQUIRED, target=where)  # fmt: skip
        host = uri.lower().removeprefix("https://").split("/", 1)[0]
        vault = await ask(request, self._vaults.GetVault, kpb.GetVaultRequest(name=f"vaults/{host.split('.', 1)[0]}"))
        if uri.lower().rstrip("/") != vault.vault_uri.lower().rstrip("/"):  # (another cloud's, or a port)
            raise ArmError(400, "BadRequest", f"{where}.keyVaultUri must be a vault's URI, such as"
                           f" {vault.vault_uri}.", Reason.KEY_URI_MALFORMED, target=f"{where}.keyVaultUri")  # fmt: skip
        key_uri = f"{vault.vault_uri.rstrip('/')}/keys/{name}" + (f"/{version}" if version else "")
        return spb.SetEncryptionRequest(name=account.name, key_uri=key_uri, key_subscription_id=vault.subscription_id)

    async def delete_account(self, request: web.Request, params: Params) -> web.Response:
        try:
            found = await self._account(request, params)
        except errors.NotFound:
            return web.Response(status=204)
        await ask(request, self._speech.DeleteSpeechResource, spb.DeleteSpeechResourceRequest(name=found.name))
        return web.Response(status=200)

    # --- lists ------------------------------------------------------------------------

    async def list_in_group(self, request: web.Request, params: Params) -> web.Response:
        await group_exists(request, self._groups, params)
        group = params["group"].lower()
        accounts = [
            a
            for a in await all_accounts(request, self._speech, params["subscription"])
            if a.resource_group.lower() == group
        ]
        return listing(request, [account_json(a) for a in accounts])

    async def list_in_subscription(self, request: web.Request, params: Params) -> web.Response:
        return listing(
            request, [account_json(a) for a in await all_accounts(request, self._speech, params["subscription"])]
        )

    async def list_deleted(self, request: web.Request, params: Params) -> web.Response:
        """None: a deleted account is gone at once. (The caller's token and sight of the
        subscription are checked as for any listing.)"""
        await all_accounts(request, self._speech, params["subscription"])
        return listing(request, [])

    async def get_deleted(self, request: web.Request, params: Params) -> web.Response:
        await all_accounts(request, self._speech, params["subscription"])
        raise ArmError(404, "ResourceNotFound", f"The deleted account '{params['account'][:64]}' was not found: a"
                       " deleted speech account is gone at once.", Reason.SPEECH_RESOURCE_NOT_FOUND)  # fmt: skip
