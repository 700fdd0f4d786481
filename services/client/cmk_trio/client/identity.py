"""Client of the identity service: sign in with client credentials, call the directory, and
follow its event stream to keep a token validator's revocations and keys current."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import grpc
from google.protobuf import field_mask_pb2
from google.protobuf.message import Message

from cmk_trio.client.calls import DEFAULT_TIMEOUT, TokenSource, call, call_as
from cmk_trio.proto.identity.v1 import identity_service_pb2 as pb
from cmk_trio.proto.identity.v1 import identity_service_pb2_grpc as pb_grpc
from cmk_trio.proto.identity.v1 import resources_pb2 as res
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.clock import Clock, SystemClock
from cmk_trio.rpckit.keyfiles import read_private_text
from cmk_trio.rpckit.status import error_from_rpc
from cmk_trio.rpckit.token_cache import AccessToken, TokenCache

R = TypeVar("R")


@dataclass(frozen=True)
class ClientCredentials:
    """A principal's sign-in: tenant, client id and a client secret."""

    tenant_id: str
    client_id: str
    client_secret: str = field(repr=False)

    @classmethod
    def from_file(cls, path: Path) -> ClientCredentials:
        """Read a credentials file as `cmk platform-credentials` and `cmk up` write it
        (JSON with tenant_id, client_id and client_secret). It must be a private file in a
        directory only its user may write, as ssh wants its keys; otherwise
        rpckit.keyfiles.PrivateFileRefused says which and what to do."""
        data = json.loads(read_private_text(path))
        return cls(data["tenant_id"], data["client_id"], data["client_secret"])

    @classmethod
    def from_env(cls, env: Mapping[str, str], prefix: str) -> ClientCredentials | None:
        """A platform service's sign-in from `{prefix}_CREDENTIALS_FILE`, or else from
        `{prefix}_TENANT_ID`, `{prefix}_CLIENT_ID` and `{prefix}_CLIENT_SECRET`; None when
        neither is set."""
        if path := env.get(f"{prefix}_CREDENTIALS_FILE"):
            return cls.from_file(Path(path))
        if client_id := env.get(f"{prefix}_CLIENT_ID"):
            return cls(env.get(f"{prefix}_TENANT_ID", ""), client_id, env.get(f"{prefix}_CLIENT_SECRET", ""))
        return None


class _Tokens:
    """An IdentityClient's tokens as a TokenSource: a token for an audience, and the cached
    one dropped when a service refused it."""

    def __init__(self, client: IdentityClient) -> None:
        self._client = client

    async def __call__(self, audience: str) -> str:
        return await self._client._token(audience)

    def invalidate(self, audience: str) -> None:
        self._client.token_cache.invalidate(audience)
        if isinstance(self._client._token_source, TokenSource):
            self._client._token_source.invalidate(audience)


class IdentityClient:
    """The identity service's API, with a token for the directory audience obtained and
    renewed from `credentials` (or a fixed `token`)."""

    token_for: TokenSource
    """A valid token for an audience: the fixed one, or a cached one renewed in time
    (`await client.token_for(audience)`); give it to the other clients as their tokens."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        credentials: ClientCredentials | None = None,
        *,
        token: str | None = None,
        token_source: Callable[[str], Awaitable[str]] | None = None,
        clock: Clock | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.channel = channel
        self.directory = pb_grpc.IdentityServiceStub(channel)
        self.tokens = pb_grpc.TokenServiceStub(channel)
        self.groups = pb_grpc.ResourceGroupServiceStub(channel)
        self.timeout = timeout
        """Seconds each call may take (a `deadline` block overrides it)."""
        self._credentials = credentials
        self._fixed_token = token
        self._token_source = token_source
        self._clock = clock or SystemClock()
        self.token_cache = TokenCache(self._fetch, self._clock)
        self.token_for = _Tokens(self)

    async def _fetch(self, audience: str) -> AccessToken:
        if self._credentials is None:
            raise RuntimeError("this client has no credentials to obtain tokens with")
        issued = await self.issue_token(self._credentials, audience)
        return AccessToken.received(issued.access_token, issued.expires_in, self._clock.now())

    async def _token(self, audience: str) -> str:
        if self._fixed_token is not None:
            return self._fixed_token
        if self._token_source is not None:
            return await self._token_source(audience)
        return await self.token_cache.get(audience)

    def forget_tokens(self) -> None:
        """Drop the tokens held (the key that signed them was revoked): the next call gets new ones."""
        self.token_cache.invalidate()

    async def _call(self, method: Callable[..., Awaitable[R]], request: Message) -> R:
        return await call_as(self.token_for, audiences.DIRECTORY, method, request, timeout=self.timeout)

    # --- tokens -----------------------------------------------------------------------

    async def issue_token(self, credentials: ClientCredentials, audience: str) -> pb.IssueTokenResponse:
        request = pb.IssueTokenRequest(
            tenant_id=credentials.tenant_id,
            client_id=credentials.client_id,
            client_secret=credentials.client_secret,
            audience=audience,
        )
        return await call(self.tokens.IssueToken, request, timeout=self.timeout)

    async def issue_managed_identity_token(self, name: str, audience: str) -> pb.IssueManagedIdentityTokenResponse:
        return await self._call(
            self.tokens.IssueManagedIdentityToken, pb.IssueManagedIdentityTokenRequest(name=name, audience=audience)
        )

    async def list_signing_keys(self) -> list[res.SigningKey]:
        keys: list[res.SigningKey] = []
        page_token = ""
        while True:
            request = pb.ListSigningKeysRequest(page_token=page_token)
            page = await call(self.tokens.ListSigningKeys, request, timeout=self.timeout)
            keys += page.signing_keys
            page_token = page.next_page_token
            if not page_token:
                return keys

    async def rotate_signing_key(self) -> res.SigningKey:
        return await self._call(self.tokens.RotateSigningKey, pb.RotateSigningKeyRequest())

    async def revoke_signing_key(self, kid: str) -> res.SigningKey:
        """Withdraw a signing key at once; returns the key that signs from now on."""
        reply = await self._call(self.tokens.RevokeSigningKey, pb.RevokeSigningKeyRequest(name=f"signingKeys/{kid}"))
        return reply.active_key

    # --- tenants and subscriptions ----------------------------------------------------

    async def create_tenant(self, display_name: str) -> res.Tenant:
        return await self._call(
            self.directory.CreateTenant, pb.CreateTenantRequest(tenant=res.Tenant(display_name=display_name))
        )

    async def get_tenant(self, tenant_id: str) -> res.Tenant:
        return await self._call(self.directory.GetTenant, pb.GetTenantRequest(name=f"tenants/{tenant_id}"))

    async def list_tenants(self, page_size: int = 0, page_token: str = "") -> pb.ListTenantsResponse:
        return await self._call(
            self.directory.ListTenants, pb.ListTenantsRequest(page_size=page_size, page_token=page_token)
        )

    async def create_subscription(self, tenant_id: str, display_name: str) -> res.Subscription:
        return await self._call(
            self.directory.CreateSubscription,
            pb.CreateSubscriptionRequest(subscription=res.Subscription(tenant_id=tenant_id, display_name=display_name)),
        )

    async def get_subscription(self, subscription_id: str) -> res.Subscription:
        return await self._call(
            self.directory.GetSubscription, pb.GetSubscriptionRequest(name=f"subscriptions/{subscription_id}")
        )

    async def list_subscriptions(
        self, tenant_id: str = "", page_size: int = 0, page_token: str = ""
    ) -> pb.ListSubscriptionsResponse:
        return await self._call(
            self.directory.ListSubscriptions,
            pb.ListSubscriptionsRequest(
                parent=f"tenants/{tenant_id}" if tenant_id else "", page_size=page_size, page_token=page_token
            ),
        )

    async def transfer_subscription(self, subscription_id: str, target_tenant_id: str) -> res.Subscription:
        return await self._call(
            self.directory.TransferSubscription,
            pb.TransferSubscriptionRequest(name=f"subscriptions/{subscription_id}", target_tenant_id=target_tenant_id),
        )

    # --- principals -------------------------------------------------------------------

    async def create_principal(
        self, tenant_id: str, kind: int, display_name: str, *, tenant_admin: bool = False, platform_service: str = ""
    ) -> res.Principal:
        principal = res.Principal(
            kind=res.PrincipalKind.ValueType(kind),
            display_name=display_name,
            tenant_admin=tenant_admin,
            platform_service=platform_service,
        )
        return await self._call(
            self.directory.CreatePrincipal,
            pb.CreatePrincipalRequest(parent=f"tenants/{tenant_id}", principal=principal),
        )

    async def get_principal(self, tenant_id: str, object_id: str) -> res.Principal:
        return await self._call(
            self.directory.GetPrincipal, pb.GetPrincipalRequest(name=principal_name(tenant_id, object_id))
        )

    async def list_principals(
        self, tenant_id: str, kind: int = 0, page_size: int = 0, page_token: str = ""
    ) -> pb.ListPrincipalsResponse:
        return await self._call(
            self.directory.ListPrincipals,
            pb.ListPrincipalsRequest(
                parent=f"tenants/{tenant_id}",
                kind=res.PrincipalKind.ValueType(kind),
                page_size=page_size,
                page_token=page_token,
            ),
        )

    async def rename_principal(self, tenant_id: str, object_id: str, display_name: str) -> res.Principal:
        return await self._call(
            self.directory.UpdatePrincipal,
            pb.UpdatePrincipalRequest(
                principal=res.Principal(name=principal_name(tenant_id, object_id), display_name=display_name),
                update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
            ),
        )

    async def enable_principal(self, tenant_id: str, object_id: str) -> res.Principal:
        return await self._call(
            self.directory.EnablePrincipal, pb.EnablePrincipalRequest(name=principal_name(tenant_id, object_id))
        )

    async def disable_principal(self, tenant_id: str, object_id: str) -> res.Principal:
        return await self._call(
            self.directory.DisablePrincipal, pb.DisablePrincipalRequest(name=principal_name(tenant_id, object_id))
        )

    async def delete_principal(self, tenant_id: str, object_id: str) -> None:
        await self._call(
            self.directory.DeletePrincipal, pb.DeletePrincipalRequest(name=principal_name(tenant_id, object_id))
        )

    async def create_managed_identity(self, tenant_id: str, resource_id: str, display_name: str = "") -> res.Principal:
        return await self._call(
            self.directory.CreateManagedIdentity,
            pb.CreateManagedIdentityRequest(
                parent=f"tenants/{tenant_id}", resource_id=resource_id, display_name=display_name
            ),
        )

    async def delete_managed_identity(self, tenant_id: str, object_id: str) -> None:
        await self._call(
            self.directory.DeleteManagedIdentity,
            pb.DeleteManagedIdentityRequest(name=principal_name(tenant_id, object_id)),
        )

    # --- client secrets ---------------------------------------------------------------

    async def add_client_secret(
        self, tenant_id: str, object_id: str, display_name: str = "", lifetime_days: int = 0
    ) -> pb.AddClientSecretResponse:
        return await self._call(
            self.directory.AddClientSecret,
            pb.AddClientSecretRequest(
                parent=principal_name(tenant_id, object_id), display_name=display_name, lifetime_days=lifetime_days
            ),
        )

    async def list_client_secrets(self, tenant_id: str, object_id: str) -> pb.ListClientSecretsResponse:
        return await self._call(
            self.directory.ListClientSecrets, pb.ListClientSecretsRequest(parent=principal_name(tenant_id, object_id))
        )

    async def delete_client_secret(self, tenant_id: str, object_id: str, secret_id: str) -> None:
        await self._call(
            self.directory.DeleteClientSecret,
            pb.DeleteClientSecretRequest(name=f"{principal_name(tenant_id, object_id)}/secrets/{secret_id}"),
        )

    # --- role assignments -------------------------------------------------------------

    async def create_role_assignment(
        self, principal_id: str, role: int, scope: str, role_assignment_id: str = ""
    ) -> res.RoleAssignment:
        """Grant `role` on `scope`; the assignment gets `role_assignment_id` if one is given
        (a UUID of the caller's choosing), a new id otherwise."""
        return await self._call(
            self.directory.CreateRoleAssignment,
            pb.CreateRoleAssignmentRequest(
                role_assignment=res.RoleAssignment(
                    principal_id=principal_id,
                    role=res.Role.ValueType(role),
                    scope=scope,
                    role_assignment_id=role_assignment_id,
                )
            ),
        )

    async def get_role_assignment(self, role_assignment_id: str) -> res.RoleAssignment:
        return await self._call(
            self.directory.GetRoleAssignment, pb.GetRoleAssignmentRequest(name=f"roleAssignments/{role_assignment_id}")
        )

    async def list_role_assignments(
        self, principal_id: str = "", scope: str = "", page_size: int = 0, page_token: str = ""
    ) -> pb.ListRoleAssignmentsResponse:
        return await self._call(
            self.directory.ListRoleAssignments,
            pb.ListRoleAssignmentsRequest(
                principal_id=principal_id, scope=scope, page_size=page_size, page_token=page_token
            ),
        )

    async def delete_role_assignment(self, role_assignment_id: str) -> None:
        await self._call(
            self.directory.DeleteRoleAssignment,
            pb.DeleteRoleAssignmentRequest(name=f"roleAssignments/{role_assignment_id}"),
        )

    # --- resource groups ---------------------------------------------------------------

    async def create_resource_group(
        self, subscription_id: str, name: str, location: str, tags: Mapping[str, str] | None = None
    ) -> res.ResourceGroup:
        group = res.ResourceGroup(subscription_id=subscription_id, resource_group=name, location=location, tags=tags)
        return await self._call(self.groups.CreateResourceGroup, pb.CreateResourceGroupRequest(resource_group=group))

    async def get_resource_group(self, subscription_id: str, name: str) -> res.ResourceGroup:
        return await self._call(
            self.groups.GetResourceGroup, pb.GetResourceGroupRequest(name=resource_group_id(subscription_id, name))
        )

    async def list_resource_groups(
        self, subscription_id: str, page_size: int = 0, page_token: str = ""
    ) -> pb.ListResourceGroupsResponse:
        return await self._call(
            self.groups.ListResourceGroups,
            pb.ListResourceGroupsRequest(
                parent=f"/subscriptions/{subscription_id}", page_size=page_size, page_token=page_token
            ),
        )

    async def update_resource_group_tags(
        self, subscription_id: str, name: str, tags: Mapping[str, str]
    ) -> res.ResourceGroup:
        """Replace every tag of the group with `tags`."""
        group = res.ResourceGroup(name=resource_group_id(subscription_id, name), tags=tags)
        return await self._call(
            self.groups.UpdateResourceGroup,
            pb.UpdateResourceGroupRequest(resource_group=group, update_mask=field_mask_pb2.FieldMask(paths=["tags"])),
        )

    async def delete_resource_group(self, subscription_id: str, name: str) -> None:
        """Delete the group and every role assignment on it or below (not the resources in it:
        those are their services' to delete first)."""
        name = resource_group_id(subscription_id, name)
        await self._call(self.groups.DeleteResourceGroup, pb.DeleteResourceGroupRequest(name=name))

    async def check_access(self, scope: str, action: int, principal_id: str = "") -> pb.CheckAccessResponse:
        return await self._call(
            self.directory.CheckAccess,
            pb.CheckAccessRequest(principal_id=principal_id, scope=scope, action=res.Action.ValueType(action)),
        )

    # --- events -----------------------------------------------------------------------

    async def watch_events(
        self, after_sequence: int = 0, on_heartbeat: Callable[[], None] | None = None
    ) -> AsyncIterator[res.Event]:
        """The event stream from `after_sequence`; errors arrive typed. Heartbeats (an idle
        stream saying it is alive) are not yielded: `on_heartbeat` is told of them."""
        token = await self.token_for(audiences.DIRECTORY)
        stream = self.directory.WatchEvents(
            pb.WatchEventsRequest(after_sequence=after_sequence), metadata=(("authorization", f"Bearer {token}"),)
        )
        try:
            async for event in stream:
                if event.type == res.HEARTBEAT:
                    if on_heartbeat is not None:
                        on_heartbeat()
                    continue
                yield event
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from exc
        finally:
            stream.cancel()


def resource_group_id(subscription_id: str, name: str) -> str:
    """A resource group's name (and Azure resource id): /subscriptions/{s}/resourceGroups/{rg}."""
    return f"/subscriptions/{subscription_id}/resourceGroups/{name}"


def principal_name(tenant_id: str, object_id: str) -> str:
    return f"tenants/{tenant_id}/principals/{object_id}"
