"""Every RPC of the trio, fuzzed with structurally valid but hostile requests (tests/security/fuzz.py):
no input gets UNKNOWN, INTERNAL or DATA_LOSS, a refusal without ErrorInfo, a hang, an unhealthy
service, a refused write that stored something, or a traceback in the log.

    CMK_FUZZ_INPUTS   inputs per service (default 300: the everyday run; the full run uses 10000)
    CMK_FUZZ_SEED     the random seed (default fuzz.DEFAULT_SEED)
    CMK_FUZZ_REPORT   write the figures as JSON to this path (SECURITY.md is rendered from it)
"""

from __future__ import annotations

import base64
import json

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from google.protobuf.message import Message

from cmk_trio.client.channel import open_channel
from cmk_trio.client.identity import IdentityClient
from cmk_trio.client.keyvault import KeyVaultClient
from cmk_trio.client.speech import SpeechClient
from cmk_trio.identity.server import build_server
from cmk_trio.keyvault.server import AUDIENCES as KEYVAULT_AUDIENCES
from cmk_trio.proto.identity.v1 import identity_service_pb2 as idpb
from cmk_trio.proto.identity.v1 import resources_pb2 as idres
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2 as kvpb
from cmk_trio.proto.keyvault.v1 import resources_pb2 as kvres
from cmk_trio.proto.speech.v1 import resources_pb2 as res
from cmk_trio.proto.speech.v1 import speech_service_pb2 as speechpb
from cmk_trio.rpckit import audiences
from cmk_trio.speech.server import AUDIENCES as SPEECH_AUDIENCES
from tests.conftest import identity_config, operator_credentials
from tests.identity.helpers import make_principal, make_tenant
from tests.security import fuzz
from tests.speech.cmk_world import World

SEED, INPUTS, REPORT = fuzz.settings()
BUDGET = 120 + INPUTS * 0.25  # seconds for the test function: about 3 x 30 ms per input, and room


async def other_tenant(operator, channel, clock, speech_endpoint: str, keyvault_endpoint: str) -> list[str]:
    """A second customer (Fabrikam) with a vault, a key and a speech resource: its names are in the
    fuzzer's pool, so the world's administrator sends them too. Returns its ids and names."""
    tenant = await make_tenant(operator, channel, clock, "Fabrikam")
    await operator.create_role_assignment(
        tenant.admin.object_id, idres.OWNER, f"/subscriptions/{tenant.subscription_id}"
    )
    sp, kv = open_channel(speech_endpoint), open_channel(keyvault_endpoint)
    try:
        speech = SpeechClient(sp, tenant.admin_client.token_for)
        await speech.request_approval(tenant.subscription_id, "BYOK")
        await SpeechClient(sp, operator.token_for).approve(tenant.subscription_id)
        clock.advance(1)
        resource = await speech.create_resource(tenant.subscription_id, "rg1", "fabspeech", "westeurope")
        await speech.create_application(resource.name, "fabapp", "{}")
        vaults = KeyVaultClient(kv, tenant.admin_client.token_for)
        await vaults.create_vault("fabrikam-kv", tenant.subscription_id, "rg1", "westeurope")
        await vaults.create_key("fabrikam-kv", "fabkey")
    finally:
        await sp.close()
        await kv.close()
    return [tenant.tenant_id, tenant.subscription_id, tenant.admin.object_id, "fabrikam-kv", resource.name]


def private_jwk() -> str:
    """A fresh RSA private key as a JWK, for ImportKey."""
    numbers = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_numbers()

    def b64(n: int) -> str:
        return base64.urlsafe_b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).decode().rstrip("=")

    parts = {
        "n": numbers.public_numbers.n, "e": numbers.public_numbers.e, "d": numbers.d, "p": numbers.p,
        "q": numbers.q, "dp": numbers.dmp1, "dq": numbers.dmq1, "qi": numbers.iqmp,
    }  # fmt: skip
    return json.dumps({"kty": "RSA", **{k: b64(v) for k, v in parts.items()}})


async def seeds(world: World, operator, channel, clock) -> dict[str, list[Message]]:
    """Valid requests for the methods whose fields must agree with each other (the fuzzer learns
    the others' plausible values by itself), and a deleted key and vault for the recover and
    get-deleted methods to find. Keys are "package.Service/Method"."""
    sp, credentials, _ = await make_principal(operator, channel, clock, world.tenant_id, "fuzz-sp")
    key, version = world.key.key_id, world.key.version
    unversioned = key.removesuffix(f"/{version}")
    plaintext = bytes(range(32))
    wrapped = await world.vaults.wrap(key, plaintext)
    doomed = await world.vaults.create_key("contoso-cmk", "doomed")
    doomed_key = doomed.key_id.removesuffix(f"/{doomed.version}")
    await world.vaults.delete_key(doomed_key)
    await world.vaults.create_vault("doomed-vault", world.subscription_id, "rg1", "westeurope")
    await world.vaults.delete_vault("doomed-vault")
    policy = kvres.KeyRotationPolicy(
        lifetime_actions=[kvres.LifetimeAction(action=kvres.ROTATE, time_after_create="P90D")], expiry_time="P1Y"
    )
    resource = res.SpeechResource(
        subscription_id=world.subscription_id, resource_group="rg2", account_name="seeded", location="westeurope",
        pricing_tier=res.S0,
    )  # fmt: skip
    vault = kvres.Vault(vault_name="seed-vault", subscription_id=world.subscription_id, resource_group="rg1",
                        location="westeurope")  # fmt: skip
    return {
        "cmk.identity.v1.IdentityService/AddClientSecret": [
            idpb.AddClientSecretRequest(parent=sp.name, display_name="s")
        ],
        "cmk.identity.v1.TokenService/IssueToken": [
            idpb.IssueTokenRequest(
                tenant_id=credentials.tenant_id,
                client_id=credentials.client_id,
                client_secret=credentials.client_secret,
                audience=audiences.MANAGEMENT,
            )
        ],
        "cmk.keyvault.v1.VaultService/CreateVault": [kvpb.CreateVaultRequest(vault=vault)],
        "cmk.keyvault.v1.KeyService/ImportKey": [
            kvpb.ImportKeyRequest(parent="vaults/contoso-cmk", key_name="imported", key_material=private_jwk())
        ],
        "cmk.keyvault.v1.KeyService/WrapKey": [
            kvpb.WrapKeyRequest(name=key, algorithm=kvres.RSA_OAEP_256, plaintext=plaintext)
        ],
        "cmk.keyvault.v1.KeyService/Encrypt": [
            kvpb.EncryptRequest(name=key, algorithm=kvres.RSA_OAEP_256, plaintext=plaintext)
        ],
        "cmk.keyvault.v1.KeyService/UnwrapKey": [
            kvpb.UnwrapKeyRequest(name=key, algorithm=kvres.RSA_OAEP_256, ciphertext=wrapped.ciphertext)
        ],
        "cmk.keyvault.v1.KeyService/Decrypt": [
            kvpb.DecryptRequest(name=key, algorithm=kvres.RSA_OAEP_256, ciphertext=wrapped.ciphertext)
        ],
        "cmk.keyvault.v1.KeyService/GetDeletedKey": [kvpb.GetDeletedKeyRequest(name=doomed_key)],
        "cmk.keyvault.v1.KeyService/RecoverDeletedKey": [kvpb.RecoverDeletedKeyRequest(name=doomed_key)],
        "cmk.keyvault.v1.VaultService/RecoverVault": [kvpb.RecoverVaultRequest(name="vaults/doomed-vault")],
        "cmk.keyvault.v1.KeyService/UpdateKeyRotationPolicy": [
            kvpb.UpdateKeyRotationPolicyRequest(name=unversioned, policy=policy)
        ],
        "cmk.speech.v1.SpeechResourceService/CreateSpeechResource": [
            speechpb.CreateSpeechResourceRequest(resource=resource)
        ],
        "cmk.speech.v1.SpeechResourceService/SetEncryption": [
            speechpb.SetEncryptionRequest(
                name=world.resource.name,
                key_uri=unversioned,
                key_subscription_id=world.subscription_id,
            ),
            speechpb.SetEncryptionRequest(name=world.resource.name, vault_name="contoso-cmk", key_name="cmk"),
        ],
        "cmk.speech.v1.ApplicationService/CreateApplication": [
            speechpb.CreateApplicationRequest(
                parent=world.resource.name, application=res.Application(display_name="seeded", configuration_json="{}")
            )
        ],
    }


ISOLATED = frozenset({"cmk.identity.v1.TokenService/RevokeSigningKey"})
"""Fuzzed on a server of their own with a fresh token per call (they take every token away)."""


@pytest.mark.timeout(BUDGET)
async def test_no_input_to_any_rpc_breaks_a_service(world: World, identity, keyvault, operator, channel, clock):
    foreign = await other_tenant(operator, channel, clock, world.server.endpoint, keyvault.endpoint)
    targets = [
        *fuzz.targets_of("identity", identity.endpoint, lambda _: audiences.DIRECTORY),
        *fuzz.targets_of("keyvault", keyvault.endpoint, KEYVAULT_AUDIENCES.__getitem__),
        *fuzz.targets_of("speech", world.server.endpoint, SPEECH_AUDIENCES.__getitem__),
    ]
    # Revoking a signing key refuses every token the callers hold: fuzzed on its own server
    # below, with a fresh token per call, as the development clock is.
    assert fuzz.OPERATOR_ONLY <= {t.short for t in targets}, "every operator-only method exists"
    targets = [t for t in targets if t.short not in ISOLATED]
    fuzzer = fuzz.Fuzzer(
        targets,
        fuzz.Callers(admin=world.speech._tokens, operator=operator.token_for),
        seed=SEED,
        inputs_per_service=INPUTS,
        databases={
            "identity": identity.config.database_location,
            "keyvault": keyvault.config.database_location,
            "speech": world.server.config.database_location,
        },
        foreign=foreign,
    )
    fuzzer.harvest(world.resource)
    fuzzer.harvest(world.key)
    for method, requests in (await seeds(world, operator, channel, clock)).items():
        for request in requests:
            fuzzer.seed(method, request)
    figures = await fuzzer.run()
    if REPORT is not None:
        fuzz.write_report(figures, REPORT)
    print(figures.summary())
    assert {s: figures.inputs[s] for s in ("identity", "keyvault", "speech")} == dict.fromkeys(
        ("identity", "keyvault", "speech"), INPUTS
    ), "every input was sent (a service that stopped answering is skipped)"
    assert figures.failures == []


async def test_the_development_clock_takes_no_input_badly(tmp_path, clock):
    """The DevService of a service started with --dev-time-control (the world's refuse every call
    with CLOCK_CONTROL_DISABLED before reading the request): the operator's AdvanceClock, fuzzed.
    Each call gets a fresh token, since a successful call moves the service's clock by up to ten
    years and the last token would be expired."""
    server = await build_server(identity_config(tmp_path / "identity", dev_time_control=True), clock=clock)
    ch = grpc.aio.insecure_channel(server.endpoint)
    try:
        credentials = operator_credentials(server)
        client = IdentityClient(ch, credentials, clock=clock)

        async def fresh(audience: str) -> str:
            return (await client.issue_token(credentials, audience)).access_token

        targets = [
            t
            for t in fuzz.targets_of("identity", server.endpoint, lambda _: audiences.DIRECTORY)
            if t.method.containing_service.name == "DevService" or t.short in ISOLATED
        ]
        fuzzer = fuzz.Fuzzer(targets, fuzz.Callers(fresh, fresh), seed=SEED, inputs_per_service=max(50, INPUTS // 6))
        figures = await fuzzer.run()
        print(figures.summary())
        assert figures.failures == []
    finally:
        await ch.close()
        await server.stop(grace=0)
