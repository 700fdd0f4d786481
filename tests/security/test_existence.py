"""Nothing of another tenant shows that it exists (issue 12, finding 7): a caller with no
rights on an object gets exactly what a missing object gets (code, reason, and the message
but for the name the caller gave), and no error names an id the caller did not give. The
prober is another tenant's administrator; the objects are the CMK world's (Contoso's)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import pytest

from cmk_trio.client.keyvault import KeyVaultClient
from cmk_trio.client.speech import SpeechClient
from cmk_trio.proto.identity.v1 import resources_pb2 as idres
from cmk_trio.rpckit.errors import ServiceError
from tests.identity.helpers import make_tenant
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
