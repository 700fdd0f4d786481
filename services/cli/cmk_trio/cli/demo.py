"""`cmk demo`: the seed document, step by step, against a running trio, printed the way a
person would read it. Every step checks that the services behaved as the seed says; the
exit code is 0 only if all did."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc

from cmk_trio.client.calls import call_as
from cmk_trio.client.channel import open_channel
from cmk_trio.client.identity import ClientCredentials, IdentityClient
from cmk_trio.client.keyvault import KeyVaultClient
from cmk_trio.client.speech import SpeechClient
from cmk_trio.proto.identity.v1 import resources_pb2 as idres
from cmk_trio.proto.speech.v1 import resources_pb2 as spres
from cmk_trio.proto.speech.v1 import speech_service_pb2 as sppb
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.errors import ServiceError, Unavailable

CONFIG = {"commands": [{"name": "TurnOnTheLight", "examples": ["turn on the light"]}], "note": "demo configuration"}


class StepFailed(Exception):
    """A step did not behave as the seed says."""


@dataclass
class Report:
    """What the demo did, step by step."""

    say: Callable[[str], None]
    steps: list[dict[str, str | bool]] = field(default_factory=list)

    def step(self, title: str, detail: str) -> None:
        self.steps.append({"step": title, "ok": True, "detail": detail})
        self.say(f"✓ {title}\n    {detail}")

    def fail(self, title: str, detail: str) -> None:
        self.steps.append({"step": title, "ok": False, "detail": detail})
        self.say(f"✗ {title}\n    {detail}")


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise StepFailed(what)


REVOCATION_BOUND_S = 5.0
"""How long the demo waits for speech to hear of a revocation (milliseconds, as a rule: the
vault's event reaches speech's cache after the removal is acknowledged, not before)."""


async def refused_soon(call: Callable[[], Awaitable[object]], reason: str) -> ServiceError:
    """The refusal with `reason` that `call()` meets within REVOCATION_BOUND_S. A refusal to
    retry (the service busy, or a moment without identity's heartbeat) is looked past; one
    with another reason fails the step at once."""
    deadline = time.monotonic() + REVOCATION_BOUND_S
    last = "calls succeed"
    while True:
        try:
            await call()
        except Unavailable as busy:
            last = f"the last refusal was {busy.reason.value}"
        except ServiceError as refused:
            expect(refused.reason.value == reason, f"expected {reason}, got {refused.reason.value}: {refused.message}")
            return refused
        if time.monotonic() > deadline:
            raise StepFailed(f"expected a refusal with {reason} within {REVOCATION_BOUND_S:g} s, but {last}")
        await asyncio.sleep(0.005)


async def expect_refusal(call: Awaitable[object], reason: str) -> ServiceError:
    try:
        await call
    except ServiceError as refused:
        expect(refused.reason.value == reason, f"expected {reason}, got {refused.reason.value}: {refused.message}")
        return refused
    raise StepFailed(f"expected a refusal with {reason}, but the call succeeded")


async def sealed_records(operator: IdentityClient, speech: SpeechClient, names: list[str]) -> list[bytes]:
    """The records `names` as speech stores them, sealed: read by the operator through speech's
    development service, which hands them over as the database holds them, unopened."""
    found = []
    for name in names:
        request = sppb.GetSealedRecordRequest(name=name)
        record = await call_as(operator.token_for, audiences.MANAGEMENT, speech.dev.GetSealedRecord, request)
        found.append(record.sealed)
    return found


async def run_demo(
    endpoints: dict[str, str],
    operator: ClientCredentials,
    say: Callable[[str], None],
    dial: Callable[[str], grpc.aio.Channel] = open_channel,
) -> Report:
    """Walk the seed; the report says which steps behaved."""
    report = Report(say)
    channels = {name: dial(endpoint) for name, endpoint in endpoints.items()}
    title = "start"
    try:
        op = IdentityClient(channels["identity"], operator)
        op_speech = SpeechClient(channels["speech"], op.token_for)
        tag = os.urandom(3).hex()

        title = "Create a tenant, a subscription and an administrator"
        tenant = await op.create_tenant(f"Contoso {tag}")
        sub = await op.create_subscription(tenant.tenant_id, "Production")
        admin = await op.create_principal(tenant.tenant_id, idres.USER, "Avery Admin", tenant_admin=True)
        secret = await op.add_client_secret(tenant.tenant_id, admin.object_id, "demo")
        await op.create_role_assignment(admin.object_id, idres.OWNER, f"/subscriptions/{sub.subscription_id}")
        ava = IdentityClient(
            channels["identity"], ClientCredentials(tenant.tenant_id, secret.client_id, secret.secret_value)
        )
        vaults = KeyVaultClient(channels["keyvault"], ava.token_for)
        speech = SpeechClient(channels["speech"], ava.token_for)
        report.step(title, f"tenant {tenant.tenant_id}, subscription {sub.subscription_id}, Owner {admin.object_id}")

        title = "Request customer-managed keys (the request form) and have the operator approve"
        requested = await speech.request_approval(sub.subscription_id, "we need to manage our own keys")
        approved = await op_speech.approve(sub.subscription_id, "approved")
        expect(
            requested.state == spres.REQUESTED and approved.state == spres.APPROVED, "the approval did not go through"
        )
        report.step(title, "REQUESTED, then APPROVED by the platform operator")

        title = "Create a key vault with soft-delete and purge protection, and an RSA 2048 key"
        vault_name = f"demo-{tag}"
        vault = await vaults.create_vault(
            vault_name, sub.subscription_id, "demo-rg", "westeurope", purge_protection=True
        )
        key = await vaults.create_key(vault_name, "speech-cmk", size=2048)
        expect(vault.soft_delete_enabled and vault.purge_protection_enabled, "the vault is not recoverable")
        report.step(title, f"Key Identifier: {key.key_id}")

        title = "Create a Speech resource after the approval: it starts with Microsoft-managed keys"
        resource = await speech.create_resource(sub.subscription_id, "demo-rg", f"speech-{tag}", "westeurope")
        expect(
            resource.encryption.key_source == spres.MICROSOFT_MANAGED, "the resource did not start Microsoft-managed"
        )
        report.step(title, resource.name)

        title = "Store a Custom Commands application and the LUIS keys"
        app = await speech.create_application(resource.name, "Lights", json.dumps(CONFIG))
        await speech.set_luis_keys(resource.name, f"authoring-{tag}", f"prediction-{tag}")
        at_rest = [app.name, f"{resource.name}/luisKeys"]
        before = await sealed_records(op, op_speech, at_rest)
        clear = (str(CONFIG["note"]).encode(), f"authoring-{tag}".encode())
        expect(not any(text in record for text in clear for record in before), "data is stored in clear")
        report.step(title, f"application {app.application_id}; stored only as AES-256-GCM ciphertext")

        title = "Enable customer-managed keys with the key URI and the vault's subscription"
        enabled = await speech.set_encryption(
            resource.name, key_uri=key.key_id, key_subscription_id=sub.subscription_id
        )
        identity = enabled.identity.principal_id
        expect(enabled.encryption.key_source == spres.CUSTOMER_MANAGED and bool(identity), "CMK was not enabled")
        report.step(title, f"managed identity {identity} granted get, wrapKey, unwrapKey; data key rewrapped")

        title = "Read the data back: transparent, whatever the key"
        read = await speech.get_application(app.name)
        keys = await speech.get_luis_keys(resource.name)
        expect(
            json.loads(read.configuration_json) == CONFIG and keys.authoring_key == f"authoring-{tag}", "data differs"
        )
        report.step(title, "configuration and LUIS keys read back intact")

        title = "Rotate the key and update the resource to the new version"
        newer = await vaults.rotate_key(key.key_id)
        updated = await speech.set_encryption(
            resource.name, key_uri=newer.key_id, key_subscription_id=sub.subscription_id, skip_grant=True
        )
        expect(updated.encryption.key_version == newer.version, "the resource does not use the new version")
        report.step(title, f"now on version {newer.version}")

        title = "The stored ciphertext did not change: rotation does not re-encrypt data"
        after = await sealed_records(op, op_speech, at_rest)
        expect(after == before, "a stored ciphertext changed")
        report.step(title, f"{len(before)} stored records byte-for-byte the same")

        title = "Revoke the identity's access: the data becomes unreadable, with the cause"
        await vaults.remove_access_policy(vault_name, identity)
        revoked = time.monotonic()
        refused = await refused_soon(lambda: speech.get_application(app.name), "CUSTOMER_KEY_ACCESS_REVOKED")
        took = round((time.monotonic() - revoked) * 1000)
        report.step(title, f"{refused.reason.value} {took} ms after the policy was removed: {refused.message}")

        title = "Restore access: the same data reads back, nothing lost"
        await vaults.set_access_policy(vault_name, tenant.tenant_id, identity, ["get", "wrapKey", "unwrapKey"])
        expect(json.loads((await speech.get_application(app.name)).configuration_json) == CONFIG, "data differs")
        report.step(title, "readable again")

        title = "Disable customer-managed keys: back to Microsoft-managed"
        back = await speech.disable_encryption(resource.name)
        await vaults.remove_access_policy(vault_name, identity)
        expect(back.encryption.key_source == spres.MICROSOFT_MANAGED, "still customer-managed")
        expect((await speech.get_luis_keys(resource.name)).prediction_key == f"prediction-{tag}", "data differs")
        report.step(title, "revoking the vault afterwards changes nothing: the data stays readable")

        title = "The audit trail of the key, verified"
        records = (await vaults.list_audit(vault_name, page_size=1000)).records
        unwraps = [r for r in records if r.operation == "UnwrapKey" and r.caller_object_id == identity]
        expect(any(r.result == "allowed" for r in unwraps), "no allowed unwrap by the identity in the audit log")
        expect(any(r.reason == "FORBIDDEN_BY_POLICY" for r in unwraps), "the refused unwrap is not in the audit log")
        verdict = await KeyVaultClient(channels["keyvault"], op.token_for).verify_audit()
        expect(verdict.ok, f"the audit log does not verify: {verdict.problem}")
        report.step(title, f"{len(records)} records for the vault; chain of {verdict.records} records verified")
    except (StepFailed, ServiceError) as exc:
        report.fail(title, str(exc) if isinstance(exc, StepFailed) else f"{exc.reason.value}: {exc.message}")
    finally:
        for channel in channels.values():
            await channel.close()
    return report
