"""Nothing of another tenant shows that it exists (issue 12, finding 7): a caller with no
rights on an object gets exactly what a missing object gets (code, reason, and the message
but for the name the caller gave), and no error names an id the caller did not give. The
prober is another tenant's administrator; the objects are the CMK world's (Contoso's).

The one exception, as in Azure (issue 22, item 10): on the vault's data plane, a principal of
the vault's own tenant without an access policy is told FORBIDDEN_BY_POLICY naming the vault
(so that a revoked identity learns why), while a vault that does not exist is VAULT_NOT_FOUND.
Callers of other tenants, and every caller on the management plane without a role, get
VAULT_NOT_FOUND for both. EXISTENCE_RULE is that rule, cell by cell."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest

from cmk_trio.client.identity import IdentityClient
from cmk_trio.client.keyvault import KeyVaultClient
from cmk_trio.client.speech import SpeechClient
from cmk_trio.proto.identity.v1 import resources_pb2 as idres
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2 as kvpb
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2_grpc as kvpb_grpc
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.errors import ServiceError
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.status import error_info_of
from tests.identity.helpers import make_principal, make_tenant
from tests.speech.cmk_world import World


async def answer(call: Callable[[], Awaitable[object]]) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        await call()
    return caught.value


def same(existing: ServiceError, missing: ServiceError, names: tuple[str, str]) -> None:
    """Same class (code), reason and message but for the name given; metadata alike too."""
    assert (type(existing), existing.reason) == (type(missing), missing.reason)
    assert existing.message.replace(names[0], "<name>") == missing.message.replace(names[1], "<name>")
    assert set(existing.metadata) == set(missing.metadata)


async def test_another_tenants_objects_answer_as_missing_ones(world: World, operator, channel, kv_channel_for, clock):
    stranger = await make_tenant(operator, channel, clock, "Fabrikam")
    await operator.create_role_assignment(
        stranger.admin.object_id, idres.OWNER, f"/subscriptions/{stranger.subscription_id}"
    )
    them = stranger.admin_client
    their_vaults = KeyVaultClient(kv_channel_for, them.token_for)
    their_speech = SpeechClient(world.speech.channel, them.token_for)
    contoso_admin = next(p for p in (await operator.list_principals(world.tenant_id)).principals if p.tenant_admin)
    await world.vaults.create_vault("contoso-gone", world.subscription_id, "rg1", "westeurope")
    await world.vaults.delete_vault("contoso-gone")  # soft-deleted: still Contoso's, still not Fabrikam's to see
    grant = (await operator.list_role_assignments(principal_id=contoso_admin.object_id)).role_assignments[0]
    nobody = str(uuid.uuid4())
    missing_resource = world.resource.name.replace("speech1", "nothing-here")
    missing_key = world.key.key_id.replace("contoso-cmk", "nothing-here")
    probes = {
        "tenant": (lambda: them.get_tenant(world.tenant_id), lambda: them.get_tenant(nobody),
                   (world.tenant_id, nobody)),
        "principal": (lambda: them.get_principal(world.tenant_id, contoso_admin.object_id),
                      lambda: them.get_principal(nobody, nobody), (world.tenant_id, nobody)),
        "subscription": (lambda: them.get_subscription(world.subscription_id), lambda: them.get_subscription(nobody),
                         (world.subscription_id, nobody)),
        "role assignment": (lambda: them.get_role_assignment(grant.role_assignment_id),
                            lambda: them.get_role_assignment(nobody), (grant.role_assignment_id, nobody)),
        "vault": (lambda: their_vaults.get_vault("contoso-cmk"), lambda: their_vaults.get_vault("nothing-here"),
                  ("contoso-cmk", "nothing-here")),
        "key": (lambda: their_vaults.unwrap(world.key.key_id, b"x" * 256),
                lambda: their_vaults.unwrap(missing_key, b"x" * 256), ("contoso-cmk", "nothing-here")),
        "speech resource": (lambda: their_speech.get_resource(world.resource.name),
                            lambda: their_speech.get_resource(missing_resource), ("speech1", "nothing-here")),
        # Found in review: granting and revoking roles named the other tenant's id.
        "grant on a subscription": (
            lambda: them.create_role_assignment(stranger.admin.object_id, idres.READER,
                                                f"/subscriptions/{world.subscription_id}"),
            lambda: them.create_role_assignment(stranger.admin.object_id, idres.READER, f"/subscriptions/{nobody}"),
            (world.subscription_id, nobody)),
        "role assignment to revoke": (lambda: them.delete_role_assignment(grant.role_assignment_id),
                                      lambda: them.delete_role_assignment(nobody), (grant.role_assignment_id, nobody)),
        "a deleted vault's audit": (lambda: their_vaults.list_audit("contoso-gone"),
                                    lambda: their_vaults.list_audit("nothing-here"), ("contoso-gone", "nothing-here")),
    }  # fmt: skip
    for what, (theirs, absent, names) in probes.items():
        existing, missing = await answer(theirs), await answer(absent)
        same(existing, missing, names)
        told = existing.message + " ".join(existing.metadata.values())
        secrets = {world.tenant_id, contoso_admin.object_id} - {names[0]}
        assert not [s for s in secrets if s in told], f"{what}: {told}"


NOT_FOUND = (grpc.StatusCode.NOT_FOUND, Reason.VAULT_NOT_FOUND)
FORBIDDEN = (grpc.StatusCode.PERMISSION_DENIED, Reason.FORBIDDEN_BY_POLICY)

EXISTENCE_RULE = {
    # (caller, vault, plane): what the caller is told
    ("same tenant, no role or policy", "existing", "data"): FORBIDDEN,
    ("same tenant, no role or policy", "missing", "data"): NOT_FOUND,
    ("same tenant, no role or policy", "existing", "management"): NOT_FOUND,
    ("same tenant, no role or policy", "missing", "management"): NOT_FOUND,
    ("same tenant's administrator, no role or policy", "existing", "data"): FORBIDDEN,
    ("same tenant's administrator, no role or policy", "missing", "data"): NOT_FOUND,
    ("same tenant's administrator, no role or policy", "existing", "management"): NOT_FOUND,
    ("same tenant's administrator, no role or policy", "missing", "management"): NOT_FOUND,
    ("another tenant (Owner of its own subscription)", "existing", "data"): NOT_FOUND,
    ("another tenant (Owner of its own subscription)", "missing", "data"): NOT_FOUND,
    ("another tenant (Owner of its own subscription)", "existing", "management"): NOT_FOUND,
    ("another tenant (Owner of its own subscription)", "missing", "management"): NOT_FOUND,
}
"""Who learns that a vault exists: only a principal of its own tenant, and only on the data
plane (where FORBIDDEN_BY_POLICY names the vault). The management plane without a role, and
any caller of another tenant, cannot tell an existing vault from a missing one."""


async def test_who_learns_that_a_vault_exists(world: World, operator, channel, kv_channel_for, clock):
    _, plain, _ = await make_principal(operator, channel, clock, world.tenant_id, "no role, no policy")
    stranger = await make_tenant(operator, channel, clock, "Fabrikam")
    await operator.create_role_assignment(
        stranger.admin.object_id, idres.OWNER, f"/subscriptions/{stranger.subscription_id}"
    )
    # A tenant administrator is an administrator of the directory, not of the subscription:
    # Contoso's was made Owner by the world; this one is a second, without any role.
    _, second, _ = await make_principal(
        operator, channel, clock, world.tenant_id, "second admin", kind=idres.USER, admin=True
    )
    callers = {
        "same tenant, no role or policy": IdentityClient(channel, plain, clock=clock),
        "same tenant's administrator, no role or policy": IdentityClient(channel, second, clock=clock),
        "another tenant (Owner of its own subscription)": stranger.admin_client,
    }
    vaults = {"existing": "contoso-cmk", "missing": "nothing-here"}
    vault_stub, key_stub = kvpb_grpc.VaultServiceStub(kv_channel_for), kvpb_grpc.KeyServiceStub(kv_channel_for)

    async def ask(caller: IdentityClient, vault: str, plane: str) -> tuple[grpc.StatusCode, str | None, str]:
        audience = audiences.VAULT if plane == "data" else audiences.MANAGEMENT
        metadata = (("authorization", f"Bearer {await caller.token_for(audience)}"),)
        call: Any
        if plane == "data":
            key_id = world.key.key_id.replace("contoso-cmk", vault)
            call = key_stub.GetKey(kvpb.GetKeyRequest(name=key_id), metadata=metadata)
        else:
            call = vault_stub.GetVault(kvpb.GetVaultRequest(name=f"vaults/{vault}"), metadata=metadata)
        try:
            await call
        except grpc.aio.AioRpcError as refused:
            info = error_info_of(refused)
            return refused.code(), info.reason if info else None, refused.details() or ""
        return grpc.StatusCode.OK, None, ""

    seen = {}
    for (who, which, plane), want in EXISTENCE_RULE.items():
        code, reason, details = await ask(callers[who], vaults[which], plane)
        seen[who, which, plane] = (code, reason)
        if want == FORBIDDEN:  # it names the vault (and the permission wanting)
            assert "contoso-cmk" in details and "get" in details, details
    assert seen == {cell: (code, reason.value) for cell, (code, reason) in EXISTENCE_RULE.items()}
    # The control: Contoso's own administrator, Owner of the subscription, reads the vault.
    assert (await world.vaults.get_vault("contoso-cmk")).vault_name == "contoso-cmk"
    # Vault names are global, as Azure's are: that a name is taken is no secret (creating one is
    # refused), though whose it is and what it holds are.
    theirs = KeyVaultClient(kv_channel_for, stranger.admin_client.token_for)
    with pytest.raises(ServiceError) as taken:
        await theirs.create_vault("contoso-cmk", stranger.subscription_id, "rg1", "westeurope")
    assert taken.value.reason is Reason.VAULT_NAME_TAKEN
    told = taken.value.message + " ".join(taken.value.metadata.values())
    assert world.tenant_id not in told and world.subscription_id not in told, told


def test_security_md_states_the_rule_as_tested():
    """SECURITY.md says who learns what, from EXISTENCE_RULE, and no longer that every caller
    without rights is told what a missing object gets."""
    from tests.security.report import DEFENCES, existence_section

    section = "\n".join(existence_section())
    for (who, _, _), (code, reason) in EXISTENCE_RULE.items():
        assert who in section and f"{code.name} {reason.value}" in section
    said = next(how for threat, how, _ in DEFENCES if threat == "learning what exists in another tenant")
    assert "FORBIDDEN_BY_POLICY" in said and "own tenant" in said, said
