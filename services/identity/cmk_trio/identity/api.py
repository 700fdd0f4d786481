"""The gRPC face of the identity service: requests to domain calls, domain objects to
messages. No rules live here; they are in `directory` and `issuer`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import TypeVar

from google.protobuf import empty_pb2, field_mask_pb2

from cmk_trio.identity import model, names
from cmk_trio.identity.directory import Directory
from cmk_trio.identity.issuer import SigningKeyRing, TokenIssuer, TokenPolicy
from cmk_trio.proto.identity.v1 import identity_service_pb2 as pb
from cmk_trio.proto.identity.v1 import identity_service_pb2_grpc as pb_grpc
from cmk_trio.proto.identity.v1 import resources_pb2 as res
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.auth import Audience, current_caller
from cmk_trio.rpckit.errors import invalid_field
from cmk_trio.rpckit.events import tail
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.storage import decode_page_token, encode_page_token, page_size_of
from cmk_trio.rpckit.timestamps import to_timestamp
from cmk_trio.rpckit.tokens import issuer_for
from cmk_trio.rpckit.types import Context
from cmk_trio.rpckit.validation import enum_value, require_uuid

T = TypeVar("T")

# Methods that need no bearer token: signing in, and the public keys.
PUBLIC_METHODS = frozenset(
    {
        "/cmk.identity.v1.TokenService/IssueToken",
        "/cmk.identity.v1.TokenService/ListSigningKeys",
    }
)
_ARM = frozenset({audiences.DIRECTORY, audiences.MANAGEMENT})
ARM_METHODS = ("GetSubscription", "ListSubscriptions", "GetTenant", "ListTenants", "GetPrincipal", "CheckAccess",
               "CreateRoleAssignment", "GetRoleAssignment", "ListRoleAssignments", "DeleteRoleAssignment")  # fmt: skip
"""The directory's methods that Azure Resource Manager's door calls too."""
AUDIENCES: dict[str, Audience] = {
    "": audiences.DIRECTORY,
    # Azure Resource Manager's calls, which its door makes with the caller's management token.
    "cmk.identity.v1.ResourceGroupService": _ARM,
    **{f"/cmk.identity.v1.IdentityService/{method}": _ARM for method in ARM_METHODS},
}
"""The audience a token must be for, by method: the directory's, or Azure Resource Manager's
as well where its door answers with this service's data."""
SIGN_IN_METHODS = frozenset({"/cmk.identity.v1.TokenService/IssueToken"})
"""The methods where anonymous callers present a secret: counted against the sign-ins' own
budget of the cap on calls, as identity's HTTPS token endpoint is."""


# --- domain to proto -----------------------------------------------------------------


def tenant_pb(t: model.Tenant, issuer_base: str) -> res.Tenant:
    return res.Tenant(
        name=f"tenants/{t.tenant_id}",
        tenant_id=t.tenant_id,
        display_name=t.display_name,
        issuer=issuer_for(issuer_base, t.tenant_id),
        platform=t.platform,
        create_time=to_timestamp(t.create_time),
    )


def subscription_pb(s: model.Subscription) -> res.Subscription:
    return res.Subscription(
        name=f"subscriptions/{s.subscription_id}",
        subscription_id=s.subscription_id,
        tenant_id=s.tenant_id,
        display_name=s.display_name,
        create_time=to_timestamp(s.create_time),
        transfer_time=to_timestamp(s.transfer_time),
    )


def principal_pb(p: model.Principal) -> res.Principal:
    return res.Principal(
        name=f"tenants/{p.tenant_id}/principals/{p.object_id}",
        object_id=p.object_id,
        tenant_id=p.tenant_id,
        kind=res.PrincipalKind.ValueType(p.kind),
        display_name=p.display_name,
        client_id=p.client_id,
        enabled=p.enabled,
        resource_id=p.resource_id,
        owner_object_id=p.owner_object_id,
        platform_service=p.platform_service,
        tenant_admin=p.tenant_admin,
        operator=p.operator,
        create_time=to_timestamp(p.create_time),
        update_time=to_timestamp(p.update_time),
    )


def secret_pb(tenant_id: str, s: model.ClientSecret) -> res.ClientSecret:
    return res.ClientSecret(
        name=f"tenants/{tenant_id}/principals/{s.object_id}/secrets/{s.secret_id}",
        secret_id=s.secret_id,
        display_name=s.display_name,
        create_time=to_timestamp(s.create_time),
        expire_time=to_timestamp(s.expire_time),
    )


def role_assignment_pb(a: model.RoleAssignment) -> res.RoleAssignment:
    return res.RoleAssignment(
        name=f"roleAssignments/{a.role_assignment_id}",
        role_assignment_id=a.role_assignment_id,
        principal_id=a.principal_id,
        role=res.Role.ValueType(a.role),
        scope=a.scope,
        tenant_id=a.tenant_id,
        create_time=to_timestamp(a.create_time),
        created_by=a.created_by,
    )


def signing_key_pb(k: model.SigningKey) -> res.SigningKey:
    return res.SigningKey(
        name=f"signingKeys/{k.kid}",
        kid=k.kid,
        algorithm="RS256",
        public_jwk=k.public_jwk,
        state=res.ACTIVE if k.active else res.RETIRING,
        create_time=to_timestamp(k.create_time),
        retire_time=to_timestamp(k.retire_time),
    )


def event_pb(e: model.Event) -> res.Event:
    return res.Event(
        sequence=e.sequence,
        type=res.EventType.ValueType(e.type),
        time=to_timestamp(e.time),
        tenant_id=e.tenant_id,
        principal_id=e.principal_id,
        subscription_id=e.subscription_id,
        new_tenant_id=e.new_tenant_id,
        kid=e.kid,
        scope=e.scope,
    )


def token_pb(t: model.IssuedToken) -> pb.IssueTokenResponse:
    return pb.IssueTokenResponse(
        access_token=t.token,
        token_type="Bearer",  # noqa: S106 (the OAuth token type, not a password)
        expire_time=to_timestamp(t.expire_time),
        expires_in=t.expires_in,
    )


# --- request helpers -----------------------------------------------------------------


def page_of(kind: str, request_size: int, token: str) -> tuple[str | None, int]:
    return decode_page_token(kind, token), page_size_of(request_size)


def next_token(kind: str, items: Sequence[T], limit: int, key: Callable[[T], str]) -> str:
    return encode_page_token(kind, key(items[-1])) if len(items) == limit and items else ""


def mask_paths(mask: field_mask_pb2.FieldMask, allowed: set[str]) -> set[str]:
    paths = set(mask.paths)
    if not paths:
        raise invalid_field(
            "update_mask", Reason.UPDATE_MASK_INVALID, f"name the fields to change: {', '.join(sorted(allowed))}"
        )
    unknown = paths - allowed
    if unknown:
        # Named back only in part: a status message travels in gRPC metadata, whose size is
        # limited (a long one cost the caller the ErrorInfo).
        named = ", ".join(p[:64] for p in sorted(unknown)[:5]) + (", ..." if len(unknown) > 5 else "")
        raise invalid_field(
            "update_mask", Reason.UPDATE_MASK_INVALID, f"cannot update {named}; updatable: {', '.join(sorted(allowed))}"
        )
    return paths


def _optional_uuid(field: str, value: str) -> str | None:
    return require_uuid(field, value) if value else None


class IdentityApi(pb_grpc.IdentityServiceServicer):
    """cmk.identity.v1.IdentityService."""

    def __init__(self, directory: Directory, policy: TokenPolicy, *, heartbeat: float) -> None:
        self._d = directory
        self._issuer_base = policy.issuer_base
        self._heartbeat = heartbeat

    async def _actor(self) -> model.Principal:
        caller = current_caller()
        return await self._d.actor(caller.object_id, caller.tenant_id)

    # tenants

    async def CreateTenant(self, request: pb.CreateTenantRequest, context: Context) -> res.Tenant:
        tenant = await self._d.create_tenant(await self._actor(), request.tenant.display_name)
        return tenant_pb(tenant, self._issuer_base)

    async def GetTenant(self, request: pb.GetTenantRequest, context: Context) -> res.Tenant:
        tenant_id = names.tenant_id("name", request.name)
        return tenant_pb(await self._d.get_tenant(await self._actor(), tenant_id), self._issuer_base)

    async def ListTenants(self, request: pb.ListTenantsRequest, context: Context) -> pb.ListTenantsResponse:
        after, limit = page_of("tenants", request.page_size, request.page_token)
        found = await self._d.list_tenants(await self._actor(), after=after, limit=limit)
        return pb.ListTenantsResponse(
            tenants=[tenant_pb(t, self._issuer_base) for t in found],
            next_page_token=next_token("tenants", found, limit, lambda t: t.tenant_id),
        )

    async def UpdateTenant(self, request: pb.UpdateTenantRequest, context: Context) -> res.Tenant:
        tenant_id = names.tenant_id("tenant.name", request.tenant.name)
        mask_paths(request.update_mask, {"display_name"})
        tenant = await self._d.rename_tenant(await self._actor(), tenant_id, request.tenant.display_name)
        return tenant_pb(tenant, self._issuer_base)

    # subscriptions

    async def CreateSubscription(self, request: pb.CreateSubscriptionRequest, context: Context) -> res.Subscription:
        tenant_id = require_uuid("subscription.tenant_id", request.subscription.tenant_id)
        sub = await self._d.create_subscription(await self._actor(), tenant_id, request.subscription.display_name)
        return subscription_pb(sub)

    async def GetSubscription(self, request: pb.GetSubscriptionRequest, context: Context) -> res.Subscription:
        sub_id = names.subscription_id("name", request.name)
        return subscription_pb(await self._d.get_subscription(await self._actor(), sub_id))

    async def ListSubscriptions(
        self, request: pb.ListSubscriptionsRequest, context: Context
    ) -> pb.ListSubscriptionsResponse:
        tenant_id = names.tenant_id("parent", request.parent) if request.parent else None
        after, limit = page_of("subscriptions", request.page_size, request.page_token)
        found = await self._d.list_subscriptions(await self._actor(), tenant_id, after=after, limit=limit)
        return pb.ListSubscriptionsResponse(
            subscriptions=[subscription_pb(s) for s in found],
            next_page_token=next_token("subscriptions", found, limit, lambda s: s.subscription_id),
        )

    async def TransferSubscription(self, request: pb.TransferSubscriptionRequest, context: Context) -> res.Subscription:
        sub_id = names.subscription_id("name", request.name)
        target = require_uuid("target_tenant_id", request.target_tenant_id)
        return subscription_pb(await self._d.transfer_subscription(await self._actor(), sub_id, target))

    # principals

    async def CreatePrincipal(self, request: pb.CreatePrincipalRequest, context: Context) -> res.Principal:
        tenant_id = names.tenant_id("parent", request.parent)
        kind = enum_value("principal.kind", request.principal.kind, res.PrincipalKind.values())
        principal = await self._d.principals.create_principal(
            await self._actor(),
            tenant_id,
            kind=model.PrincipalKind(kind),
            name=request.principal.display_name,
            tenant_admin=request.principal.tenant_admin,
            platform_service=request.principal.platform_service,
        )
        return principal_pb(principal)

    async def GetPrincipal(self, request: pb.GetPrincipalRequest, context: Context) -> res.Principal:
        tenant_id, object_id = names.principal("name", request.name)
        return principal_pb(await self._d.principals.get_principal(await self._actor(), tenant_id, object_id))

    async def ListPrincipals(self, request: pb.ListPrincipalsRequest, context: Context) -> pb.ListPrincipalsResponse:
        tenant_id = names.tenant_id("parent", request.parent)
        kind = None
        if request.kind:
            kind = model.PrincipalKind(enum_value("kind", request.kind, res.PrincipalKind.values()))
        after, limit = page_of("principals", request.page_size, request.page_token)
        found = await self._d.principals.list_principals(await self._actor(), tenant_id, kind, after=after, limit=limit)
        return pb.ListPrincipalsResponse(
            principals=[principal_pb(p) for p in found],
            next_page_token=next_token("principals", found, limit, lambda p: p.object_id),
        )

    async def UpdatePrincipal(self, request: pb.UpdatePrincipalRequest, context: Context) -> res.Principal:
        tenant_id, object_id = names.principal("principal.name", request.principal.name)
        paths = mask_paths(request.update_mask, {"display_name", "enabled"})
        principal = await self._d.principals.update_principal(
            await self._actor(),
            tenant_id,
            object_id,
            name=request.principal.display_name if "display_name" in paths else None,
            enabled=request.principal.enabled if "enabled" in paths else None,
        )
        return principal_pb(principal)

    async def _set_enabled(self, name: str, enabled: bool) -> res.Principal:
        tenant_id, object_id = names.principal("name", name)
        return principal_pb(
            await self._d.principals.update_principal(await self._actor(), tenant_id, object_id, enabled=enabled)
        )

    async def EnablePrincipal(self, request: pb.EnablePrincipalRequest, context: Context) -> res.Principal:
        return await self._set_enabled(request.name, True)

    async def DisablePrincipal(self, request: pb.DisablePrincipalRequest, context: Context) -> res.Principal:
        return await self._set_enabled(request.name, False)

    async def DeletePrincipal(self, request: pb.DeletePrincipalRequest, context: Context) -> empty_pb2.Empty:
        tenant_id, object_id = names.principal("name", request.name)
        await self._d.principals.delete_principal(await self._actor(), tenant_id, object_id)
        return empty_pb2.Empty()

    # managed identities

    async def CreateManagedIdentity(self, request: pb.CreateManagedIdentityRequest, context: Context) -> res.Principal:
        tenant_id = names.tenant_id("parent", request.parent)
        principal = await self._d.principals.create_managed_identity(
            await self._actor(), tenant_id, request.resource_id, request.display_name
        )
        return principal_pb(principal)

    async def DeleteManagedIdentity(
        self, request: pb.DeleteManagedIdentityRequest, context: Context
    ) -> empty_pb2.Empty:
        tenant_id, object_id = names.principal("name", request.name)
        await self._d.principals.delete_managed_identity(await self._actor(), tenant_id, object_id)
        return empty_pb2.Empty()

    # client secrets

    async def AddClientSecret(self, request: pb.AddClientSecretRequest, context: Context) -> pb.AddClientSecretResponse:
        tenant_id, object_id = names.principal("parent", request.parent)
        new = await self._d.secrets.add_client_secret(
            await self._actor(), tenant_id, object_id, request.display_name, request.lifetime_days
        )
        return pb.AddClientSecretResponse(
            secret=secret_pb(tenant_id, new.secret), secret_value=new.value, client_id=new.client_id
        )

    async def ListClientSecrets(
        self, request: pb.ListClientSecretsRequest, context: Context
    ) -> pb.ListClientSecretsResponse:
        tenant_id, object_id = names.principal("parent", request.parent)
        after, limit = page_of("secrets", request.page_size, request.page_token)
        found = await self._d.secrets.list_client_secrets(
            await self._actor(), tenant_id, object_id, after=after, limit=limit
        )
        return pb.ListClientSecretsResponse(
            secrets=[secret_pb(tenant_id, s) for s in found],
            next_page_token=next_token("secrets", found, limit, lambda s: s.secret_id),
        )

    async def DeleteClientSecret(self, request: pb.DeleteClientSecretRequest, context: Context) -> empty_pb2.Empty:
        tenant_id, object_id, secret_id = names.secret("name", request.name)
        await self._d.secrets.delete_client_secret(await self._actor(), tenant_id, object_id, secret_id)
        return empty_pb2.Empty()

    # role assignments

    async def CreateRoleAssignment(
        self, request: pb.CreateRoleAssignmentRequest, context: Context
    ) -> res.RoleAssignment:
        ra = request.role_assignment
        principal_id = require_uuid("role_assignment.principal_id", ra.principal_id)
        role = model.Role(enum_value("role_assignment.role", ra.role, res.Role.values()))
        chosen = _optional_uuid("role_assignment.role_assignment_id", ra.role_assignment_id)
        created = await self._d.role_assignments.create_role_assignment(
            await self._actor(), principal_id, role, ra.scope, chosen
        )
        return role_assignment_pb(created)

    async def GetRoleAssignment(self, request: pb.GetRoleAssignmentRequest, context: Context) -> res.RoleAssignment:
        ra_id = names.role_assignment_id("name", request.name)
        return role_assignment_pb(await self._d.role_assignments.get_role_assignment(await self._actor(), ra_id))

    async def ListRoleAssignments(
        self, request: pb.ListRoleAssignmentsRequest, context: Context
    ) -> pb.ListRoleAssignmentsResponse:
        principal_id = _optional_uuid("principal_id", request.principal_id)
        after, limit = page_of("roleAssignments", request.page_size, request.page_token)
        found = await self._d.role_assignments.list_role_assignments(
            await self._actor(), principal_id, request.scope or None, after=after, limit=limit
        )
        return pb.ListRoleAssignmentsResponse(
            role_assignments=[role_assignment_pb(a) for a in found],
            next_page_token=next_token("roleAssignments", found, limit, lambda a: a.role_assignment_id),
        )

    async def DeleteRoleAssignment(self, request: pb.DeleteRoleAssignmentRequest, context: Context) -> empty_pb2.Empty:
        ra_id = names.role_assignment_id("name", request.name)
        await self._d.role_assignments.delete_role_assignment(await self._actor(), ra_id)
        return empty_pb2.Empty()

    async def CheckAccess(self, request: pb.CheckAccessRequest, context: Context) -> pb.CheckAccessResponse:
        principal_id = _optional_uuid("principal_id", request.principal_id)
        action = model.Action(enum_value("action", request.action, res.Action.values()))
        granted = await self._d.role_assignments.check_access(await self._actor(), principal_id, request.scope, action)
        if granted is None:
            return pb.CheckAccessResponse(allowed=False)
        return pb.CheckAccessResponse(allowed=True, granted_by=role_assignment_pb(granted))

    # events

    async def WatchEvents(self, request: pb.WatchEventsRequest, context: Context) -> AsyncIterator[res.Event]:
        actor = await self._actor()
        self._d.require_event_reader(actor)
        await self._d.check_cursor(request.after_sequence)
        events = tail(
            self._d.events_after, lambda e: e.sequence, self._d.notifier, request.after_sequence,
            heartbeat=self._heartbeat,
            idle_item=lambda: model.Event(0, model.EventType.HEARTBEAT, self._d.clock.now()),
        )  # fmt: skip
        async for event in events:
            yield event_pb(event)


class TokenApi(pb_grpc.TokenServiceServicer):
    """cmk.identity.v1.TokenService."""

    def __init__(self, directory: Directory, issuer: TokenIssuer, keys: SigningKeyRing) -> None:
        self._d = directory
        self._issuer = issuer
        self._keys = keys

    async def IssueToken(self, request: pb.IssueTokenRequest, context: Context) -> pb.IssueTokenResponse:
        issued = await self._issuer.client_credentials(
            request.tenant_id, request.client_id, request.client_secret, request.audience
        )
        return token_pb(issued)

    async def IssueManagedIdentityToken(
        self, request: pb.IssueManagedIdentityTokenRequest, context: Context
    ) -> pb.IssueManagedIdentityTokenResponse:
        tenant_id, object_id = names.principal("name", request.name)
        caller = current_caller()
        actor = await self._d.actor(caller.object_id, caller.tenant_id)
        issued = token_pb(await self._issuer.managed_identity_token(actor, tenant_id, object_id, request.audience))
        return pb.IssueManagedIdentityTokenResponse(
            access_token=issued.access_token, token_type=issued.token_type, expire_time=issued.expire_time,
            expires_in=issued.expires_in,
        )  # fmt: skip

    async def ListSigningKeys(self, request: pb.ListSigningKeysRequest, context: Context) -> pb.ListSigningKeysResponse:
        after, limit = page_of("signingKeys", request.page_size, request.page_token)
        keys = await self._keys.published()
        start = 0 if after is None else next((i + 1 for i, k in enumerate(keys) if k.kid == after), len(keys))
        page = keys[start : start + limit]
        return pb.ListSigningKeysResponse(
            signing_keys=[signing_key_pb(k) for k in page],
            next_page_token=next_token("signingKeys", page, limit, lambda k: k.kid)
            if start + limit < len(keys)
            else "",
        )

    async def RotateSigningKey(self, request: pb.RotateSigningKeyRequest, context: Context) -> res.SigningKey:
        caller = current_caller()
        actor = await self._d.actor(caller.object_id, caller.tenant_id)
        self._d.require_operator(actor, "rotate signing keys")
        return signing_key_pb(await self._keys.rotate())

    async def RevokeSigningKey(
        self, request: pb.RevokeSigningKeyRequest, context: Context
    ) -> pb.RevokeSigningKeyResponse:
        caller = current_caller()
        actor = await self._d.actor(caller.object_id, caller.tenant_id)
        self._d.require_operator(actor, "revoke signing keys")
        kid = names.signing_key("name", request.name)
        return pb.RevokeSigningKeyResponse(active_key=signing_key_pb(await self._keys.revoke(kid)))
