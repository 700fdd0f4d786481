"""The authorization matrix, run: every RPC of every service, called by every kind of caller
with a valid request aimed at the customer's (Contoso's) objects, classified allow/deny and
compared with the expectation in authz_matrix.py. With CMK_SECURITY_REPORT naming a file,
the rendered markdown (SECURITY.md's tables) is written there.

The callers: none (no token); other-tenant (Fabrikam's administrator, Owner of its own
subscription); reader, contributor, owner (service principals of Contoso holding that role on
its subscription); tenant-admin (Contoso's administrator, Owner, who made the vaults);
managed-identity (the speech resource's identity, after CMK is enabled with contoso-cmk, so it
holds get/wrapKey/unwrapKey there); keyvault-platform and speech-platform (the principals the
two services run as); operator.

Destructive calls never touch what later cells need: deleting, purging, recovering,
disabling, transferring, moving and removing are aimed at throwaway objects made for the
cell (by the tenant administrator or the operator) before the call; key deletions happen in a
second vault of Contoso without purge protection (contoso-scratch), whose access policies
match contoso-cmk's; RemoveIdentity on the CMK resource is sent without the confirmation (so
an allowed caller gets FAILED_PRECONDITION and nothing changes); RestoreKey restores the backup
of a key that exists (ALREADY_EXISTS for an allowed caller); DisableEncryption goes to a
second resource without CMK; approvals are decided on a second subscription. Signing keys
are rotated and revoked last: the operator's revoke withdraws the key its own rotation just
made, not the one every cached token was signed with. The services run with
--dev-time-control so that AdvanceClock reaches its operator check (seconds=0: an operator
gets INVALID_ARGUMENT, which moves nothing).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from google.protobuf import field_mask_pb2, timestamp_pb2

from cmk_trio.client.channel import open_channel
from cmk_trio.client.identity import ClientCredentials, IdentityClient, principal_name
from cmk_trio.client.keyvault import KeyVaultClient
from cmk_trio.client.speech import SpeechClient, approval_name
from cmk_trio.proto.common.v1 import dev_service_pb2 as dev_pb
from cmk_trio.proto.common.v1 import dev_service_pb2_grpc as dev_grpc
from cmk_trio.proto.identity.v1 import identity_service_pb2 as idpb
from cmk_trio.proto.identity.v1 import identity_service_pb2_grpc as id_grpc
from cmk_trio.proto.identity.v1 import resources_pb2 as idres
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2 as kvpb
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2_grpc as kv_grpc
from cmk_trio.proto.keyvault.v1 import resources_pb2 as kvres
from cmk_trio.proto.speech.v1 import resources_pb2 as spres
from cmk_trio.proto.speech.v1 import speech_service_pb2 as sppb
from cmk_trio.proto.speech.v1 import speech_service_pb2_grpc as sp_grpc
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.clock import FakeClock
from cmk_trio.rpckit.status import error_info_of
from tests.identity.helpers import make_principal, make_tenant, resource_id
from tests.keyvault.test_crypto import private_jwk
from tests.security.authz_matrix import (
    CALLERS,
    EXPECTED,
    KNOWN_FINDINGS,
    Outcome,
    mismatches,
    render_markdown,
    rpcs,
)
from tests.speech.cmk_world import CONFIG, World

DENIALS = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}
LAST = ("cmk.identity.v1.TokenService/RotateSigningKey", "cmk.identity.v1.TokenService/RevokeSigningKey")
"""Run after every other row (they change what signs tokens)."""

TokenSource = Callable[[str], Awaitable[str]]


# --- the three services, with the development clock on -----------------------------------


@pytest.fixture
def dev_time_control() -> bool:
    """The shared fixtures' services, started with the development clock here: without it every
    signed-in caller gets CLOCK_CONTROL_DISABLED before any operator check, and the AdvanceClock
    rows would prove nothing."""
    return True


# --- the callers and the customer's objects -----------------------------------------------


@dataclass
class Matrix:
    """Everything the request builders aim at, and the callers' token sources."""

    world: World
    operator: IdentityClient
    channel: grpc.aio.Channel
    clock: FakeClock
    kv: grpc.aio.Channel
    sp: grpc.aio.Channel
    admin_kv: KeyVaultClient
    admin_sp: SpeechClient
    speech_platform: IdentityClient
    other_tenant_id: str
    victim: idres.Principal
    victim_credentials: ClientCredentials
    reader_assignment: str
    managed_identity: str
    sub2: str
    app_name: str
    scratch_key: str
    deleted_key: str
    wrapped: bytes
    encrypted: bytes
    import_jwk: str
    backup: bytes
    secret: str = ""
    deleted_secret: str = ""
    group: str = ""
    secret_backup: bytes = b""
    tokens: dict[str, TokenSource | None] = field(default_factory=dict)

    @property
    def tenant(self) -> str:
        return self.world.tenant_id

    @property
    def sub(self) -> str:
        return self.world.subscription_id

    @property
    def key(self) -> str:
        return self.world.key.key_id

    @property
    def versionless(self) -> str:
        return self.world.key.key_id.rsplit("/", 1)[0]

    def victim_name(self) -> str:
        return principal_name(self.tenant, self.victim.object_id)

    async def throwaway_principal(self, name: str) -> str:
        made = await self.operator.create_principal(self.tenant, idres.SERVICE_PRINCIPAL, name)
        return principal_name(self.tenant, made.object_id)

    async def scratch(self, name: str, *, delete: bool) -> str:
        """A key of contoso-scratch (versionless id), deleted if asked."""
        made = await self.admin_kv.create_key("contoso-scratch", name)
        key = made.key_id.rsplit("/", 1)[0]
        if delete:
            await self.admin_kv.delete_key(key)
        return key

    async def scratch_secret(self, name: str, *, delete: bool) -> str:
        """A secret of contoso-scratch (versionless id), deleted if asked."""
        made = await self.admin_kv.set_secret("contoso-scratch", name, "scratch value")
        secret = made.secret_id.rsplit("/", 1)[0]
        if delete:
            await self.admin_kv.delete_secret(secret)
        return secret

    async def vault(self, name: str, *, delete: bool) -> str:
        await self.admin_kv.create_vault(name, self.sub, "rg1", "westeurope", retention_days=7)
        if delete:
            await self.admin_kv.delete_vault(name)
        return f"vaults/{name}"


async def credentials_token(channel: grpc.aio.Channel, creds: ClientCredentials, clock: FakeClock) -> TokenSource:
    return IdentityClient(channel, creds, clock=clock).token_for


async def role_holder(m: Matrix, name: str, role: int) -> TokenSource:
    principal, creds, _ = await make_principal(m.operator, m.channel, m.clock, m.tenant, name)
    await m.operator.create_role_assignment(principal.object_id, role, f"/subscriptions/{m.sub}")
    return await credentials_token(m.channel, creds, m.clock)


@pytest.fixture
async def matrix(world: World, operator, channel, clock, keyvault, speech_cmk) -> AsyncIterator[Matrix]:
    kv, sp = open_channel(keyvault.endpoint), open_channel(speech_cmk.endpoint)
    try:
        admin_tokens = world.vaults._tokens
        admin_kv, admin_sp = KeyVaultClient(kv, admin_tokens), SpeechClient(sp, admin_tokens)
        # CMK on the resource: its managed identity gets get/wrapKey/unwrapKey on contoso-cmk.
        enabled = await world.set_encryption(vault_name="contoso-cmk", key_name="cmk")
        mi = enabled.identity.principal_id
        await admin_kv.create_vault("contoso-scratch", world.subscription_id, "rg1", "westeurope", retention_days=7)
        await admin_kv.set_access_policy("contoso-scratch", world.tenant_id, mi, ["get", "wrapKey", "unwrapKey"])
        scratch = (await admin_kv.create_key("contoso-scratch", "scratch")).key_id.rsplit("/", 1)[0]
        gone = (await admin_kv.create_key("contoso-scratch", "gone")).key_id.rsplit("/", 1)[0]
        await admin_kv.delete_key(gone)
        await admin_sp.create_resource(world.subscription_id, "rg1", "plain1", "westeurope")
        app = await admin_sp.create_application(world.resource.name, "matrix-app", CONFIG)
        other = await make_tenant(operator, channel, clock, "Fabrikam")
        await operator.create_role_assignment(
            other.admin.object_id, idres.OWNER, f"/subscriptions/{other.subscription_id}"
        )
        victim, victim_creds, _ = await make_principal(operator, channel, clock, world.tenant_id, "victim")
        sub2 = (await operator.create_subscription(world.tenant_id, "Contoso second")).subscription_id
        await operator.create_role_assignment(victim.object_id, idres.READER, f"/subscriptions/{world.subscription_id}")
        await operator.create_role_assignment(
            next(p.object_id for p in (await operator.list_principals(world.tenant_id)).principals if p.tenant_admin),
            idres.OWNER,
            f"/subscriptions/{sub2}",
        )
        await admin_sp.request_approval(sub2, "for the matrix")
        speech_platform = IdentityClient(channel, speech_cmk.config.credentials, clock=clock)
        m = Matrix(
            world=world, operator=operator, channel=channel, clock=clock, kv=kv, sp=sp, admin_kv=admin_kv,
            admin_sp=admin_sp, speech_platform=speech_platform, other_tenant_id=other.tenant_id, victim=victim,
            victim_credentials=victim_creds, reader_assignment="", managed_identity=mi, sub2=sub2, app_name=app.name,
            scratch_key=scratch, deleted_key=gone,
            wrapped=(await admin_kv.wrap(world.key.key_id, b"k" * 32)).ciphertext,
            encrypted=(await admin_kv._data(admin_kv.keys.Encrypt, kvpb.WrapKeyRequest(
                name=world.key.key_id, algorithm=kvres.RSA_OAEP_256, plaintext=b"e" * 32))).ciphertext,
            import_jwk=json.dumps(private_jwk(rsa.generate_private_key(public_exponent=65537, key_size=2048))),
            backup=await admin_kv.backup_key(world.key.key_id),
        )  # fmt: skip
        secret = await admin_kv.set_secret("contoso-cmk", "matrix-secret", "matrix value")
        m.secret, m.secret_backup = secret.secret_id, await admin_kv.backup_secret(secret.secret_id)
        m.deleted_secret = await m.scratch_secret("gone-secret", delete=True)
        m.group = (await operator.create_resource_group(world.subscription_id, "matrix-rg", "westeurope")).name
        reader_principal, reader_creds, _ = await make_principal(operator, channel, clock, world.tenant_id, "reader")
        reader_grant = await operator.create_role_assignment(
            reader_principal.object_id, idres.READER, f"/subscriptions/{world.subscription_id}"
        )
        m.reader_assignment = reader_grant.role_assignment_id

        async def managed_identity_token(audience: str) -> str:
            name = principal_name(world.tenant_id, mi)
            return (await speech_platform.issue_managed_identity_token(name, audience)).access_token

        m.tokens = {
            "none": None,
            "other-tenant": other.admin_client.token_for,
            "reader": await credentials_token(channel, reader_creds, clock),
            "contributor": await role_holder(m, "contributor", idres.CONTRIBUTOR),
            "owner": await role_holder(m, "owner", idres.OWNER),
            "tenant-admin": admin_tokens,
            "managed-identity": managed_identity_token,
            "keyvault-platform": await credentials_token(channel, keyvault.config.credentials, clock),
            "speech-platform": speech_platform.token_for,
            "operator": operator.token_for,
        }
        yield m
    finally:
        await kv.close()
        await sp.close()


# --- the requests, one builder per RPC ----------------------------------------------------

Builder = Callable[[Matrix, str], Awaitable[Any]]
ID = "cmk.identity.v1.IdentityService/"
TOK = "cmk.identity.v1.TokenService/"
RG = "cmk.identity.v1.ResourceGroupService/"
VAULT = "cmk.keyvault.v1.VaultService/"
KEY = "cmk.keyvault.v1.KeyService/"
SECRET = "cmk.keyvault.v1.SecretService/"
AUDIT = "cmk.keyvault.v1.AuditService/"
EVENTS = "cmk.keyvault.v1.EventService/"
SPEECH_DEV = "cmk.speech.v1.SpeechDevService/"
RES = "cmk.speech.v1.SpeechResourceService/"
APP = "cmk.speech.v1.ApplicationService/"


def fixed(make: Callable[[Matrix, str], Any]) -> Builder:
    async def build(m: Matrix, caller: str) -> Any:
        return make(m, caller)

    return build


async def transfer(m: Matrix, caller: str) -> Any:
    sub = await m.operator.create_subscription(m.tenant, f"transfer {caller}")
    return idpb.TransferSubscriptionRequest(
        name=f"subscriptions/{sub.subscription_id}", target_tenant_id=m.other_tenant_id
    )


async def delete_mi(m: Matrix, caller: str) -> Any:
    made = await m.speech_platform.create_managed_identity(m.tenant, resource_id(m.sub, f"del-mi-{caller}"))
    return idpb.DeleteManagedIdentityRequest(name=principal_name(m.tenant, made.object_id))


async def delete_secret(m: Matrix, caller: str) -> Any:
    added = await m.operator.add_client_secret(m.tenant, m.victim.object_id, f"cell {caller}")
    return idpb.DeleteClientSecretRequest(name=f"{m.victim_name()}/secrets/{added.secret.secret_id}")


async def delete_assignment(m: Matrix, caller: str) -> Any:
    made = await m.operator.create_role_assignment(
        m.victim.object_id, idres.READER, f"/subscriptions/{m.sub}/resourceGroups/del-{caller}"
    )
    return idpb.DeleteRoleAssignmentRequest(name=f"roleAssignments/{made.role_assignment_id}")


async def delete_group(m: Matrix, caller: str) -> Any:
    made = await m.operator.create_resource_group(m.sub, f"del-rg-{caller}", "westeurope")
    return idpb.DeleteResourceGroupRequest(name=made.name)


async def revoke(m: Matrix, caller: str) -> Any:
    if caller == "operator":  # the newest key: cached tokens stay valid
        newest = await m.operator.rotate_signing_key()
        return idpb.RevokeSigningKeyRequest(name=f"signingKeys/{newest.kid}")
    keys = await m.operator.list_signing_keys()
    return idpb.RevokeSigningKeyRequest(name=f"signingKeys/{keys[-1].kid}")


async def remove_policy(m: Matrix, caller: str) -> Any:
    await m.admin_kv.set_access_policy("contoso-cmk", m.tenant, m.victim.object_id, ["get"])
    return kvpb.RemoveAccessPolicyRequest(name="vaults/contoso-cmk", object_id=m.victim.object_id)


async def replace_policies(m: Matrix, caller: str) -> Any:
    """contoso-cmk's entries as they are (so that an allowed call changes nothing of them)."""
    vault = await m.admin_kv.get_vault("contoso-cmk")
    return kvpb.ReplaceAccessPoliciesRequest(name="vaults/contoso-cmk", access_policies=list(vault.access_policies))


async def throwaway_resource(m: Matrix, name: str) -> str:
    return (await m.admin_sp.create_resource(m.sub, "rg1", name, "westeurope")).name


async def delete_resource(m: Matrix, caller: str) -> Any:
    return sppb.DeleteSpeechResourceRequest(name=await throwaway_resource(m, f"ds-{caller}"))


async def move_resource(m: Matrix, caller: str) -> Any:
    name = await throwaway_resource(m, f"ms-{caller}")
    return sppb.MoveSpeechResourceRequest(name=name, target_subscription_id=m.sub, target_resource_group="rg2")


async def update_app(m: Matrix, caller: str) -> Any:
    current = await m.admin_sp.get_application(m.app_name)
    app = spres.Application(name=m.app_name, etag=current.etag, display_name="matrix-app", configuration_json=CONFIG)
    return sppb.UpdateApplicationRequest(application=app)


async def delete_app(m: Matrix, caller: str) -> Any:
    made = await m.admin_sp.create_application(m.world.resource.name, f"del-{caller}", CONFIG)
    return sppb.DeleteApplicationRequest(name=made.name, etag=made.etag)


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


REQUESTS: dict[str, Builder] = {
    ID + "CreateTenant": fixed(lambda m, c: idpb.CreateTenantRequest(tenant=idres.Tenant(display_name=f"t {c}"))),
    ID + "GetTenant": fixed(lambda m, c: idpb.GetTenantRequest(name=f"tenants/{m.tenant}")),
    ID + "ListTenants": fixed(lambda m, c: idpb.ListTenantsRequest()),
    ID + "UpdateTenant": fixed(lambda m, c: idpb.UpdateTenantRequest(
        tenant=idres.Tenant(name=f"tenants/{m.tenant}", display_name="Contoso"), update_mask=mask("display_name"))),
    ID + "CreateSubscription": fixed(lambda m, c: idpb.CreateSubscriptionRequest(
        subscription=idres.Subscription(tenant_id=m.tenant, display_name=f"s {c}"))),
    ID + "GetSubscription": fixed(lambda m, c: idpb.GetSubscriptionRequest(name=f"subscriptions/{m.sub}")),
    ID + "ListSubscriptions": fixed(lambda m, c: idpb.ListSubscriptionsRequest(parent="tenants/" + m.tenant)),
    ID + "TransferSubscription": transfer,
    ID + "CreatePrincipal": fixed(lambda m, c: idpb.CreatePrincipalRequest(
        parent=f"tenants/{m.tenant}", principal=idres.Principal(kind=idres.SERVICE_PRINCIPAL, display_name=f"p {c}"))),
    ID + "GetPrincipal": fixed(lambda m, c: idpb.GetPrincipalRequest(name=m.victim_name())),
    ID + "ListPrincipals": fixed(lambda m, c: idpb.ListPrincipalsRequest(parent=f"tenants/{m.tenant}")),
    ID + "UpdatePrincipal": fixed(lambda m, c: idpb.UpdatePrincipalRequest(
        principal=idres.Principal(name=m.victim_name(), display_name="victim"), update_mask=mask("display_name"))),
    ID + "EnablePrincipal": fixed(lambda m, c: idpb.EnablePrincipalRequest(name=m.victim_name())),
    ID + "DisablePrincipal": lambda m, c: _named(idpb.DisablePrincipalRequest, m.throwaway_principal(f"dis {c}")),
    ID + "DeletePrincipal": lambda m, c: _named(idpb.DeletePrincipalRequest, m.throwaway_principal(f"del {c}")),
    ID + "CreateManagedIdentity": fixed(lambda m, c: idpb.CreateManagedIdentityRequest(
        parent=f"tenants/{m.tenant}", resource_id=resource_id(m.sub, f"mi-{c}"))),
    ID + "DeleteManagedIdentity": delete_mi,
    ID + "AddClientSecret": fixed(lambda m, c: idpb.AddClientSecretRequest(parent=m.victim_name(), display_name=c)),
    ID + "ListClientSecrets": fixed(lambda m, c: idpb.ListClientSecretsRequest(parent=m.victim_name())),
    ID + "DeleteClientSecret": delete_secret,
    ID + "CreateRoleAssignment": fixed(lambda m, c: idpb.CreateRoleAssignmentRequest(
        role_assignment=idres.RoleAssignment(principal_id=m.victim.object_id, role=idres.READER,
                                             scope=f"/subscriptions/{m.sub}/resourceGroups/ra-{c}"))),
    ID + "GetRoleAssignment": fixed(lambda m, c: idpb.GetRoleAssignmentRequest(
        name=f"roleAssignments/{m.reader_assignment}")),
    ID + "ListRoleAssignments": fixed(lambda m, c: idpb.ListRoleAssignmentsRequest(scope=f"/subscriptions/{m.sub}")),
    ID + "DeleteRoleAssignment": delete_assignment,
    ID + "CheckAccess": fixed(lambda m, c: idpb.CheckAccessRequest(
        principal_id=m.victim.object_id, scope=f"/subscriptions/{m.sub}", action=idres.READ)),
    ID + "WatchEvents": fixed(lambda m, c: idpb.WatchEventsRequest(after_sequence=0)),
    RG + "CreateResourceGroup": fixed(lambda m, c: idpb.CreateResourceGroupRequest(resource_group=idres.ResourceGroup(
        subscription_id=m.sub, resource_group=f"rg-{c}", location="westeurope", tags={"made-by": c}))),
    RG + "GetResourceGroup": fixed(lambda m, c: idpb.GetResourceGroupRequest(name=m.group)),
    RG + "ListResourceGroups": fixed(lambda m, c: idpb.ListResourceGroupsRequest(parent=f"/subscriptions/{m.sub}")),
    RG + "UpdateResourceGroup": fixed(lambda m, c: idpb.UpdateResourceGroupRequest(
        resource_group=idres.ResourceGroup(name=m.group, tags={"cell": c}), update_mask=mask("tags"))),
    RG + "DeleteResourceGroup": delete_group,
    TOK + "IssueToken": fixed(lambda m, c: idpb.IssueTokenRequest(
        tenant_id=m.victim_credentials.tenant_id, client_id=m.victim_credentials.client_id,
        client_secret=m.victim_credentials.client_secret, audience=audiences.DIRECTORY)),
    TOK + "IssueManagedIdentityToken": fixed(lambda m, c: idpb.IssueManagedIdentityTokenRequest(
        name=principal_name(m.tenant, m.managed_identity), audience=audiences.VAULT)),
    TOK + "ListSigningKeys": fixed(lambda m, c: idpb.ListSigningKeysRequest()),
    TOK + "RotateSigningKey": fixed(lambda m, c: idpb.RotateSigningKeyRequest()),
    TOK + "RevokeSigningKey": revoke,
    VAULT + "CreateVault": fixed(lambda m, c: kvpb.CreateVaultRequest(vault=kvres.Vault(
        vault_name=f"cv-{c}", subscription_id=m.sub, resource_group="rg1", location="westeurope",
        soft_delete_enabled=True, soft_delete_retention_days=7))),
    VAULT + "GetVault": fixed(lambda m, c: kvpb.GetVaultRequest(name="vaults/contoso-cmk")),
    VAULT + "ListVaults": fixed(lambda m, c: kvpb.ListVaultsRequest(parent="subscriptions/" + m.sub)),
    VAULT + "UpdateVault": fixed(lambda m, c: kvpb.UpdateVaultRequest(
        vault=kvres.Vault(name="vaults/contoso-cmk", soft_delete_enabled=True),
        update_mask=mask("soft_delete_enabled"))),
    VAULT + "DeleteVault": lambda m, c: _named(kvpb.DeleteVaultRequest, m.vault(f"dv-{c}", delete=False)),
    VAULT + "ListDeletedVaults": fixed(lambda m, c: kvpb.ListDeletedVaultsRequest(parent="subscriptions/" + m.sub)),
    VAULT + "RecoverVault": lambda m, c: _named(kvpb.RecoverVaultRequest, m.vault(f"rv-{c}", delete=True)),
    VAULT + "PurgeVault": lambda m, c: _named(kvpb.PurgeVaultRequest, m.vault(f"pv-{c}", delete=True)),
    VAULT + "SetAccessPolicy": fixed(lambda m, c: kvpb.SetAccessPolicyRequest(name="vaults/contoso-cmk",
        access_policy=kvres.AccessPolicy(tenant_id=m.tenant, object_id=m.victim.object_id, key_permissions=["get"]))),
    VAULT + "UpdateAccessPolicy": fixed(lambda m, c: kvpb.UpdateAccessPolicyRequest(
        name="vaults/contoso-cmk", tenant_id=m.tenant, object_id=m.victim.object_id, add_permissions=["list"])),
    VAULT + "RemoveAccessPolicy": remove_policy,
    VAULT + "ReplaceAccessPolicies": replace_policies,
    VAULT + "CheckVaultNameAvailability": fixed(lambda m, c: kvpb.CheckVaultNameAvailabilityRequest(
        vault_name="contoso-cmk")),
    KEY + "CreateKey": fixed(lambda m, c: kvpb.CreateKeyRequest(
        parent="vaults/contoso-cmk", key_name=f"ck-{c}", key=kvres.KeyVersion(key_size=2048))),
    KEY + "ImportKey": fixed(lambda m, c: kvpb.ImportKeyRequest(
        parent="vaults/contoso-cmk", key_name=f"ik-{c}", key_material=m.import_jwk)),
    KEY + "GetKey": fixed(lambda m, c: kvpb.GetKeyRequest(name=m.key)),
    KEY + "ListKeys": fixed(lambda m, c: kvpb.ListKeysRequest(parent="vaults/contoso-cmk")),
    KEY + "ListKeyVersions": fixed(lambda m, c: kvpb.ListKeyVersionsRequest(parent=m.versionless)),
    KEY + "UpdateKey": fixed(lambda m, c: kvpb.UpdateKeyRequest(
        name=m.scratch_key, attributes=kvres.KeyVersion(enabled=True), update_mask=mask("enabled"))),
    KEY + "RotateKey": fixed(lambda m, c: kvpb.RotateKeyRequest(name=m.scratch_key)),
    KEY + "GetKeyRotationPolicy": fixed(lambda m, c: kvpb.GetKeyRotationPolicyRequest(name=m.versionless)),
    KEY + "UpdateKeyRotationPolicy": fixed(lambda m, c: kvpb.UpdateKeyRotationPolicyRequest(
        name=m.scratch_key, policy=kvres.KeyRotationPolicy())),
    KEY + "WrapKey": fixed(lambda m, c: kvpb.WrapKeyRequest(name=m.key, algorithm=kvres.RSA_OAEP_256,
                                                            plaintext=b"w" * 32)),
    KEY + "UnwrapKey": fixed(lambda m, c: kvpb.UnwrapKeyRequest(name=m.key, algorithm=kvres.RSA_OAEP_256,
                                                                ciphertext=m.wrapped)),
    KEY + "Encrypt": fixed(lambda m, c: kvpb.EncryptRequest(name=m.key, algorithm=kvres.RSA_OAEP_256,
                                                            plaintext=b"e" * 32)),
    KEY + "Decrypt": fixed(lambda m, c: kvpb.DecryptRequest(name=m.key, algorithm=kvres.RSA_OAEP_256,
                                                            ciphertext=m.encrypted)),
    KEY + "BackupKey": fixed(lambda m, c: kvpb.BackupKeyRequest(name=m.key)),
    # The backup of the key it names, which exists: an allowed caller gets ALREADY_EXISTS, nothing changes.
    KEY + "RestoreKey": fixed(lambda m, c: kvpb.RestoreKeyRequest(parent="vaults/contoso-cmk", backup=m.backup)),
    KEY + "Sign": fixed(lambda m, c: kvpb.SignRequest(name=m.key, algorithm=kvres.PS256, digest=b"s" * 32)),
    KEY + "Verify": fixed(lambda m, c: kvpb.VerifyRequest(name=m.key, algorithm=kvres.RS256, digest=b"v" * 32,
                                                          signature=b"not a signature")),
    KEY + "DeleteKey": lambda m, c: _keyed(kvpb.DeleteKeyRequest, m.scratch(f"dk-{c}", delete=False)),
    KEY + "GetDeletedKey": fixed(lambda m, c: kvpb.GetDeletedKeyRequest(name=m.deleted_key)),
    KEY + "ListDeletedKeys": fixed(lambda m, c: kvpb.ListDeletedKeysRequest(parent="vaults/contoso-scratch")),
    KEY + "RecoverDeletedKey": lambda m, c: _keyed(kvpb.RecoverDeletedKeyRequest, m.scratch(f"rk-{c}", delete=True)),
    KEY + "PurgeDeletedKey": lambda m, c: _keyed(kvpb.PurgeDeletedKeyRequest, m.scratch(f"pk-{c}", delete=True)),
    SECRET + "SetSecret": fixed(lambda m, c: kvpb.SetSecretRequest(
        parent="vaults/contoso-scratch", secret_name=f"set-{c}", secret=kvres.Secret(value="v"))),
    SECRET + "GetSecret": fixed(lambda m, c: kvpb.GetSecretRequest(name=m.secret)),
    SECRET + "ListSecrets": fixed(lambda m, c: kvpb.ListSecretsRequest(parent="vaults/contoso-cmk")),
    SECRET + "ListSecretVersions": fixed(lambda m, c: kvpb.ListSecretVersionsRequest(
        parent=m.secret.rsplit("/", 1)[0])),
    SECRET + "UpdateSecret": fixed(lambda m, c: kvpb.UpdateSecretRequest(
        name=m.secret, attributes=kvres.Secret(enabled=True), update_mask=mask("enabled"))),
    SECRET + "DeleteSecret": lambda m, c: _keyed(kvpb.DeleteSecretRequest, m.scratch_secret(f"ds-{c}", delete=False)),
    SECRET + "GetDeletedSecret": fixed(lambda m, c: kvpb.GetDeletedSecretRequest(name=m.deleted_secret)),
    SECRET + "ListDeletedSecrets": fixed(lambda m, c: kvpb.ListDeletedSecretsRequest(parent="vaults/contoso-scratch")),
    SECRET + "RecoverDeletedSecret": lambda m, c: _keyed(kvpb.RecoverDeletedSecretRequest,
                                                          m.scratch_secret(f"rs-{c}", delete=True)),
    SECRET + "PurgeDeletedSecret": lambda m, c: _keyed(kvpb.PurgeDeletedSecretRequest,
                                                        m.scratch_secret(f"ps-{c}", delete=True)),
    SECRET + "BackupSecret": fixed(lambda m, c: kvpb.BackupSecretRequest(name=m.secret)),
    # The backup of the secret it names, which exists: an allowed caller gets ALREADY_EXISTS.
    SECRET + "RestoreSecret": fixed(lambda m, c: kvpb.RestoreSecretRequest(parent="vaults/contoso-cmk",
                                                                           backup=m.secret_backup)),
    AUDIT + "ListAuditRecords": fixed(lambda m, c: kvpb.ListAuditRecordsRequest(parent="vaults/" + "contoso-cmk")),
    AUDIT + "StreamAuditRecords": fixed(lambda m, c: kvpb.StreamAuditRecordsRequest(after_sequence=0)),
    AUDIT + "CreateAuditCheckpoint": fixed(lambda m, c: kvpb.CreateAuditCheckpointRequest()),
    AUDIT + "VerifyAuditLog": fixed(lambda m, c: kvpb.VerifyAuditLogRequest()),
    AUDIT + "GetAuditPublicKey": fixed(lambda m, c: kvpb.GetAuditPublicKeyRequest()),
    EVENTS + "WatchEvents": fixed(lambda m, c: kvpb.WatchEventsRequest(after_sequence=0)),
    SPEECH_DEV + "CreateBackdatedSpeechResource": fixed(lambda m, c: sppb.CreateBackdatedSpeechResourceRequest(
        resource=spres.SpeechResource(subscription_id=m.sub, resource_group="rg1", account_name=f"bd-{c}",
                                      location="westeurope", pricing_tier=spres.S0),
        create_time=timestamp_pb2.Timestamp(seconds=1590969600))),
    SPEECH_DEV + "GetSealedRecord": fixed(lambda m, c: sppb.GetSealedRecordRequest(name=m.app_name)),
    RES + "CreateSpeechResource": fixed(lambda m, c: sppb.CreateSpeechResourceRequest(resource=spres.SpeechResource(
        subscription_id=m.sub, resource_group="rg1", account_name=f"cs-{c}", location="westeurope",
        pricing_tier=spres.S0))),
    RES + "GetSpeechResource": fixed(lambda m, c: sppb.GetSpeechResourceRequest(name=m.world.resource.name)),
    RES + "ListSpeechResources": fixed(lambda m, c: sppb.ListSpeechResourcesRequest(parent="subscriptions/" + m.sub)),
    RES + "DeleteSpeechResource": delete_resource,
    RES + "MoveSpeechResource": move_resource,
    RES + "AssignIdentity": fixed(lambda m, c: sppb.AssignIdentityRequest(name=m.world.resource.name)),
    RES + "RemoveIdentity": fixed(lambda m, c: sppb.RemoveIdentityRequest(name=m.world.resource.name)),
    RES + "SetEncryption": fixed(lambda m, c: sppb.SetEncryptionRequest(
        name=m.world.resource.name, vault_name="contoso-cmk", key_name="cmk")),
    RES + "DisableEncryption": fixed(lambda m, c: sppb.DisableEncryptionRequest(
        name=m.world.resource.name.replace("speech1", "plain1"))),
    RES + "RequestCmkApproval": fixed(lambda m, c: sppb.RequestCmkApprovalRequest(name=approval_name(m.sub), note=c)),
    RES + "ApproveCmkApproval": fixed(lambda m, c: sppb.ApproveCmkApprovalRequest(name=approval_name(m.sub2))),
    RES + "RejectCmkApproval": fixed(lambda m, c: sppb.RejectCmkApprovalRequest(name=approval_name(m.sub2))),
    RES + "GetCmkApproval": fixed(lambda m, c: sppb.GetCmkApprovalRequest(name=approval_name(m.sub))),
    APP + "CreateApplication": fixed(lambda m, c: sppb.CreateApplicationRequest(
        parent=m.world.resource.name, application=spres.Application(display_name=f"a-{c}", configuration_json=CONFIG))),
    APP + "GetApplication": fixed(lambda m, c: sppb.GetApplicationRequest(name=m.app_name)),
    APP + "ListApplications": fixed(lambda m, c: sppb.ListApplicationsRequest(parent=m.world.resource.name)),
    APP + "UpdateApplication": update_app,
    APP + "DeleteApplication": delete_app,
    APP + "SetLuisKeys": fixed(lambda m, c: sppb.SetLuisKeysRequest(parent=m.world.resource.name,
        luis_keys=spres.LuisKeys(authoring_key="luis-authoring-secret", prediction_key="luis-prediction-secret"))),
    APP + "GetLuisKeys": fixed(lambda m, c: sppb.GetLuisKeysRequest(parent=m.world.resource.name)),
    **{f"cmk.common.v1.DevService/AdvanceClock@{host}": fixed(lambda m, c: dev_pb.AdvanceClockRequest(seconds=0))
       for host in ("identity", "keyvault", "speech")},
}  # fmt: skip


async def _named(message: Any, name: Awaitable[str]) -> Any:
    return message(name=await name)


async def _keyed(message: Any, key: Awaitable[str]) -> Any:
    return message(name=await key)


# --- calling and classifying --------------------------------------------------------------

STUBS: dict[str, tuple[Any, str, str]] = {
    "cmk.identity.v1.IdentityService": (id_grpc.IdentityServiceStub, "identity", audiences.DIRECTORY),
    "cmk.identity.v1.TokenService": (id_grpc.TokenServiceStub, "identity", audiences.DIRECTORY),
    # Azure Resource Manager's audience, as its door calls it (the directory's is accepted too).
    "cmk.identity.v1.ResourceGroupService": (id_grpc.ResourceGroupServiceStub, "identity", audiences.MANAGEMENT),
    "cmk.keyvault.v1.VaultService": (kv_grpc.VaultServiceStub, "keyvault", audiences.MANAGEMENT),
    "cmk.keyvault.v1.KeyService": (kv_grpc.KeyServiceStub, "keyvault", audiences.VAULT),
    "cmk.keyvault.v1.SecretService": (kv_grpc.SecretServiceStub, "keyvault", audiences.VAULT),
    "cmk.keyvault.v1.AuditService": (kv_grpc.AuditServiceStub, "keyvault", audiences.MANAGEMENT),
    "cmk.keyvault.v1.EventService": (kv_grpc.EventServiceStub, "keyvault", audiences.MANAGEMENT),
    "cmk.speech.v1.SpeechDevService": (sp_grpc.SpeechDevServiceStub, "speech", audiences.MANAGEMENT),
    "cmk.speech.v1.SpeechResourceService": (sp_grpc.SpeechResourceServiceStub, "speech", audiences.MANAGEMENT),
    "cmk.speech.v1.ApplicationService": (sp_grpc.ApplicationServiceStub, "speech", audiences.SPEECH),
}
"""Stub, host and token audience of each service (the AUDIENCES maps of the servers)."""


def classify(code: grpc.StatusCode, reason: str, exists_for_allowed: bool = True) -> str:
    if code == grpc.StatusCode.OK:
        return "allow"
    if code in DENIALS:
        return "deny"
    if code == grpc.StatusCode.NOT_FOUND and exists_for_allowed:
        return "deny"  # every request aims at an object that exists: NOT_FOUND is the hidden refusal
    return "allow"


async def call_cell(m: Matrix, rpc: str, caller: str) -> Outcome:
    service, _, method = rpc.partition("/")
    method, _, host = method.partition("@")
    if service == "cmk.common.v1.DevService":
        audience = audiences.DIRECTORY if host == "identity" else audiences.MANAGEMENT
        channel = {"identity": m.channel, "keyvault": m.kv, "speech": m.sp}[host]
        stub: Any = dev_grpc.DevServiceStub(channel)
    else:
        stub_class, host, audience = STUBS[service]
        stub = stub_class({"identity": m.channel, "keyvault": m.kv, "speech": m.sp}[host])
    request = await REQUESTS[rpc](m, caller)
    source = m.tokens[caller]
    metadata = (("authorization", f"Bearer {await source(audience)}"),) if source is not None else None
    rpc_call = getattr(stub, method)(request, metadata=metadata, timeout=20)
    try:
        if isinstance(rpc_call, grpc.aio.UnaryStreamCall):
            await rpc_call.read()  # the first event or record (every stream here has some), or the refusal
            rpc_call.cancel()
        else:
            await rpc_call
    except grpc.aio.AioRpcError as failed:
        info = error_info_of(failed)
        reason = info.reason if info is not None else ""
        return Outcome(classify(failed.code(), reason), failed.code().name, reason)
    return Outcome("allow")


def test_the_table_names_every_rpc():
    """A new RPC must be added to the matrix (expectation and request) before this passes."""
    missing = [rpc for rpc in rpcs() if rpc not in EXPECTED or rpc not in REQUESTS]
    assert not missing, f"RPCs missing from the authorization matrix: {missing}"
    assert sorted(EXPECTED) == sorted(rpcs()), "the table names RPCs that no longer exist"
    assert all(set(row) == set(CALLERS) for row in EXPECTED.values())


async def test_authorization_matrix(matrix: Matrix):
    order = [r for r in rpcs() if r not in LAST] + list(LAST)
    results: dict[str, dict[str, Outcome]] = {}
    for rpc in order:
        results[rpc] = {}
        for caller in CALLERS:
            results[rpc][caller] = await call_cell(matrix, rpc, caller)
    rendered = render_markdown({rpc: results[rpc] for rpc in rpcs()})
    report = os.environ.get("CMK_SECURITY_REPORT")
    if report:
        Path(report).write_text(rendered)  # noqa: ASYNC240 (once, after every call)
    differing = [d for d in mismatches(results) if (d[0], d[1]) not in KNOWN_FINDINGS]
    fixed_now = set(KNOWN_FINDINGS) - {(rpc, caller) for rpc, caller, _, _ in mismatches(results)}
    assert not fixed_now, f"known findings no longer observed (remove them from KNOWN_FINDINGS): {fixed_now}"
    assert not differing, "authorization differs from the matrix:\n" + "\n".join(
        f"  {rpc} / {caller}: expected {want}, got {got.cell()}" for rpc, caller, want, got in differing
    )
