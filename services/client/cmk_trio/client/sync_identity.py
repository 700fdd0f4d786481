"""The synchronous IdentityClient: generated from cmk_trio.client.identity by
scripts/gen_sync_clients.py. Do not edit; `python scripts/gen_sync_clients.py` makes it again."""

# @generated

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from cmk_trio.client.blocking import Blocking
from cmk_trio.client.identity import ClientCredentials, IdentityClient
from cmk_trio.proto.identity.v1 import identity_service_pb2 as pb
from cmk_trio.proto.identity.v1 import resources_pb2 as res


class SyncIdentityClient(Blocking[IdentityClient]):
    """The identity service's API, with a token for the directory audience obtained and
    renewed from `credentials` (or a fixed `token`).

    (Synchronous: each call blocks.)"""

    def forget_tokens(self) -> None:
        """Drop the tokens held (the key that signed them was revoked): the next call gets new ones."""
        self._inner.forget_tokens()

    def issue_token(self, credentials: ClientCredentials, audience: str) -> pb.IssueTokenResponse:
        return self._runner.run(self._inner.issue_token(credentials, audience))

    def issue_managed_identity_token(self, name: str, audience: str) -> pb.IssueManagedIdentityTokenResponse:
        return self._runner.run(self._inner.issue_managed_identity_token(name, audience))

    def list_signing_keys(self) -> list[res.SigningKey]:
        return self._runner.run(self._inner.list_signing_keys())

    def rotate_signing_key(self) -> res.SigningKey:
        return self._runner.run(self._inner.rotate_signing_key())

    def revoke_signing_key(self, kid: str) -> res.SigningKey:
        """Withdraw a signing key at once; returns the key that signs from now on."""
        return self._runner.run(self._inner.revoke_signing_key(kid))

    def create_tenant(self, display_name: str) -> res.Tenant:
        return self._runner.run(self._inner.create_tenant(display_name))

    def get_tenant(self, tenant_id: str) -> res.Tenant:
        return self._runner.run(self._inner.get_tenant(tenant_id))

    def list_tenants(self, page_size: int = 0, page_token: str = "") -> pb.ListTenantsResponse:
        return self._runner.run(self._inner.list_tenants(page_size, page_token))

    def create_subscription(self, tenant_id: str, display_name: str) -> res.Subscription:
        return self._runner.run(self._inner.create_subscription(tenant_id, display_name))

    def get_subscription(self, subscription_id: str) -> res.Subscription:
        return self._runner.run(self._inner.get_subscription(subscription_id))

    def list_subscriptions(
        self, tenant_id: str = "", page_size: int = 0, page_token: str = ""
    ) -> pb.ListSubscriptionsResponse:
        return self._runner.run(self._inner.list_subscriptions(tenant_id, page_size, page_token))

    def transfer_subscription(self, subscription_id: str, target_tenant_id: str) -> res.Subscription:
        return self._runner.run(self._inner.transfer_subscription(subscription_id, target_tenant_id))

    def create_principal(
        self, tenant_id: str, kind: int, display_name: str, *, tenant_admin: bool = False, platform_service: str = ""
    ) -> res.Principal:
        return self._runner.run(
            self._inner.create_principal(
                tenant_id, kind, display_name, tenant_admin=tenant_admin, platform_service=platform_service
            )
        )

    def get_principal(self, tenant_id: str, object_id: str) -> res.Principal:
        return self._runner.run(self._inner.get_principal(tenant_id, object_id))

    def list_principals(
        self, tenant_id: str, kind: int = 0, page_size: int = 0, page_token: str = ""
    ) -> pb.ListPrincipalsResponse:
        return self._runner.run(self._inner.list_principals(tenant_id, kind, page_size, page_token))

    def rename_principal(self, tenant_id: str, object_id: str, display_name: str) -> res.Principal:
        return self._runner.run(self._inner.rename_principal(tenant_id, object_id, display_name))

    def enable_principal(self, tenant_id: str, object_id: str) -> res.Principal:
        return self._runner.run(self._inner.enable_principal(tenant_id, object_id))

    def disable_principal(self, tenant_id: str, object_id: str) -> res.Principal:
        return self._runner.run(self._inner.disable_principal(tenant_id, object_id))

    def delete_principal(self, tenant_id: str, object_id: str) -> None:
        self._runner.run(self._inner.delete_principal(tenant_id, object_id))

    def create_managed_identity(self, tenant_id: str, resource_id: str, display_name: str = "") -> res.Principal:
        return self._runner.run(self._inner.create_managed_identity(tenant_id, resource_id, display_name))

    def delete_managed_identity(self, tenant_id: str, object_id: str) -> None:
        self._runner.run(self._inner.delete_managed_identity(tenant_id, object_id))

    def add_client_secret(
        self, tenant_id: str, object_id: str, display_name: str = "", lifetime_days: int = 0
    ) -> pb.AddClientSecretResponse:
        return self._runner.run(self._inner.add_client_secret(tenant_id, object_id, display_name, lifetime_days))

    def list_client_secrets(self, tenant_id: str, object_id: str) -> pb.ListClientSecretsResponse:
        return self._runner.run(self._inner.list_client_secrets(tenant_id, object_id))

    def delete_client_secret(self, tenant_id: str, object_id: str, secret_id: str) -> None:
        self._runner.run(self._inner.delete_client_secret(tenant_id, object_id, secret_id))

    def create_role_assignment(
        self, principal_id: str, role: int, scope: str, role_assignment_id: str = ""
    ) -> res.RoleAssignment:
        """Grant `role` on `scope`; the assignment gets `role_assignment_id` if one is given
        (a UUID of the caller's choosing), a new id otherwise."""
        return self._runner.run(self._inner.create_role_assignment(principal_id, role, scope, role_assignment_id))

    def get_role_assignment(self, role_assignment_id: str) -> res.RoleAssignment:
        return self._runner.run(self._inner.get_role_assignment(role_assignment_id))

    def list_role_assignments(
        self, principal_id: str = "", scope: str = "", page_size: int = 0, page_token: str = ""
    ) -> pb.ListRoleAssignmentsResponse:
        return self._runner.run(self._inner.list_role_assignments(principal_id, scope, page_size, page_token))

    def delete_role_assignment(self, role_assignment_id: str) -> None:
        self._runner.run(self._inner.delete_role_assignment(role_assignment_id))

    def create_resource_group(
        self, subscription_id: str, name: str, location: str, tags: Mapping[str, str] | None = None
    ) -> res.ResourceGroup:
        return self._runner.run(self._inner.create_resource_group(subscription_id, name, location, tags))

    def get_resource_group(self, subscription_id: str, name: str) -> res.ResourceGroup:
        return self._runner.run(self._inner.get_resource_group(subscription_id, name))

    def list_resource_groups(
        self, subscription_id: str, page_size: int = 0, page_token: str = ""
    ) -> pb.ListResourceGroupsResponse:
        return self._runner.run(self._inner.list_resource_groups(subscription_id, page_size, page_token))

    def update_resource_group_tags(self, subscription_id: str, name: str, tags: Mapping[str, str]) -> res.ResourceGroup:
        """Replace every tag of the group with `tags`."""
        return self._runner.run(self._inner.update_resource_group_tags(subscription_id, name, tags))

    def delete_resource_group(self, subscription_id: str, name: str) -> None:
        """Delete the group and every role assignment on it or below (not the resources in it:
        those are their services' to delete first)."""
        self._runner.run(self._inner.delete_resource_group(subscription_id, name))

    def check_access(self, scope: str, action: int, principal_id: str = "") -> pb.CheckAccessResponse:
        return self._runner.run(self._inner.check_access(scope, action, principal_id))

    def watch_events(
        self, after_sequence: int = 0, on_heartbeat: Callable[[], None] | None = None
    ) -> Iterator[res.Event]:
        """The event stream from `after_sequence`; errors arrive typed. Heartbeats (an idle
        stream saying it is alive) are not yielded: `on_heartbeat` is told of them."""
        yield from self._iterate(self._inner.watch_events(after_sequence, on_heartbeat))

    def token_for(self, audience: str) -> str:
        """A valid token for `audience` (the client's `token_for`)."""
        return self._runner.run(self._inner.token_for(audience))
