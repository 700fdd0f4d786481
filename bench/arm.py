"""Azure Resource Manager's paths beside gRPC's, on the doors' trio (bench/doors.py): a vault
created through ARM (PUT .../vaults/{name} with an access policy, as azure-mgmt-keyvault and
`az keyvault create` send it) against CreateVault over gRPC, and a speech account's encryption
set to the customer's key and back through ARM (PATCH .../accounts/{name}, as `az
cognitiveservices account update --encryption` sends it) against SetEncryption and
DisableEncryption over gRPC. Each with the trio's CPU per call; one process serves both doors.

Every call of the vault paths makes a vault under a name of its own; the encryption paths
toggle a pool of accounts (one per caller in flight), each call one change of key source.
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from bench import proc
from cmk_trio.client.identity import IdentityClient
from cmk_trio.loadgen.scenarios import IDENTITY_GRANT, Prepared
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.errors import ServiceError
from cmk_trio.rpckit.reasons import Reason

GROUP = "arm-bench"
KV, CS, RG = "2026-02-01", "2025-09-01", "2025-04-01"


def subscription_of(prepared: Prepared) -> str:
    return prepared.app_cmk.split("/")[2]  # (/subscriptions/{s}/resourceGroups/...)


class Arm:
    """ARM requests as the Owner of the prepared subscription, on kept-alive HTTPS connections."""

    def __init__(self, prepared: Prepared, arm_url: str, ca: Path) -> None:
        self._owner = IdentityClient(prepared.channels[0], prepared.owner)  # (prepared.identity is the operator)
        self._base = f"{arm_url}/subscriptions/{subscription_of(prepared)}/resourceGroups/{GROUP}"
        trust = ssl.create_default_context(cafile=str(ca))
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trust, limit=0))

    async def send(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        token = await self._owner.token_for(audiences.MANAGEMENT)
        async with self.session.request(method, f"{self._base}{path}", json=body,
                                        headers={"Authorization": f"Bearer {token}"}) as response:  # fmt: skip
            found: dict[str, Any] = await response.json()
            if response.status >= 300:
                raise ServiceError(Reason.INTERNAL, f"{response.status}: {found.get('error', {}).get('message')}")
            return found


async def measure(prepared: Prepared, arm_url: str, ca: Path, pid: int, seconds: float,
                  concurrency: int) -> dict[str, Any]:  # fmt: skip
    arm = Arm(prepared, arm_url, ca)
    try:
        return await _measure(prepared, arm, pid, seconds, concurrency)
    finally:
        await arm.session.close()


async def _measure(prepared: Prepared, arm: Arm, pid: int, seconds: float, concurrency: int) -> dict[str, Any]:
    tenant, sub = prepared.tenant_id, subscription_of(prepared)
    policy = {"tenantId": tenant, "objectId": prepared.principals[-1],  # (the Owner, prepare's tenant admin)
              "permissions": {"keys": ["get", "create", "wrapKey"]}}  # fmt: skip
    await arm.send("PUT", f"?api-version={RG}", {"location": "westeurope"})

    async def arm_vault() -> None:
        await arm.send("PUT", f"/providers/Microsoft.KeyVault/vaults/a{uuid.uuid4().hex[:20]}?api-version={KV}", {
            "location": "westeurope", "properties": {"tenantId": tenant, "sku": {"family": "A", "name": "standard"},
                                                     "accessPolicies": [policy], "enablePurgeProtection": True},
        })  # fmt: skip

    async def grpc_vault() -> None:
        await prepared.vaults.create_vault(f"g{uuid.uuid4().hex[:20]}", sub, GROUP, "westeurope", purge_protection=True)

    vault_arm = await proc.measured_path(arm_vault, "create a vault through ARM", pid, seconds, concurrency, 0)
    vault_grpc = await proc.measured_path(grpc_vault, "create a vault over gRPC", pid, seconds, concurrency)

    # A pool of accounts made after the subscription's approval, each identity granted on the key.
    vault = prepared.vault_name
    key_uri = f"https://{vault}.vault.azure.net/"
    accounts: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    for i in range(concurrency):
        made = await arm.send("PUT", f"/providers/Microsoft.CognitiveServices/accounts/enc{i}?api-version={CS}", {
            "kind": "SpeechServices", "sku": {"name": "S0"}, "location": "westeurope",
            "identity": {"type": "SystemAssigned"}, "properties": {}})  # fmt: skip
        await prepared.vaults.set_access_policy(vault, tenant, made["identity"]["principalId"], IDENTITY_GRANT)
        accounts.put_nowait((f"enc{i}", made["id"]))
    to_key = {"properties": {"encryption": {"keySource": "Microsoft.KeyVault", "keyVaultProperties": {
        "keyVaultUri": key_uri, "keyName": prepared.key_id.split("/keys/")[1].split("/")[0]}}}}  # fmt: skip
    back = {"properties": {"encryption": {"keySource": "Microsoft.CognitiveServices"}}}
    on_key: set[str] = set()

    async def toggled(change: Callable[[str, str, bool], Awaitable[object]]) -> None:
        name, resource = await accounts.get()
        try:
            await change(name, resource, name not in on_key)
            on_key.symmetric_difference_update({name})
        finally:
            accounts.put_nowait((name, resource))

    async def by_arm(name: str, resource: str, to_customer: bool) -> object:
        return await arm.send("PATCH", f"/providers/Microsoft.CognitiveServices/accounts/{name}?api-version={CS}",
                              to_key if to_customer else back)  # fmt: skip

    key_name = prepared.key_id.split("/keys/")[1].split("/")[0]

    async def by_grpc(name: str, resource: str, to_customer: bool) -> object:
        if to_customer:
            return await prepared.speech.set_encryption(resource, key_uri=f"{key_uri}keys/{key_name}",
                                                        key_subscription_id=sub)  # fmt: skip
        return await prepared.speech.disable_encryption(resource)

    encryption_arm = await proc.measured_path(
        lambda: toggled(by_arm), "set encryption through ARM", pid, seconds, concurrency
    )
    encryption_grpc = await proc.measured_path(
        lambda: toggled(by_grpc), "set encryption over gRPC", pid, seconds, concurrency
    )
    return {"vault_arm": vault_arm, "vault_grpc": vault_grpc, "encryption_arm": encryption_arm,
            "encryption_grpc": encryption_grpc}  # fmt: skip


def render(arm: dict[str, Any]) -> list[str]:
    lines = [
        "", "Azure Resource Manager's paths on the same trio, the Owner of the subscription calling (a vault made "
        "per call; a pool of speech accounts, one per caller in flight, each call one change of key source, to the "
        "customer's key or back), each beside the same change over gRPC:", "",
        "| path | per second | p50 ms | p99 ms | errors | trio CPU ms per call |",
        "| --- | --- | --- | --- | --- | --- |",
    ]  # fmt: skip
    for key, label in (("vault_arm", "create a vault through ARM (PUT, with an access policy)"),
                       ("vault_grpc", "create a vault over gRPC (CreateVault)"),
                       ("encryption_arm", "set encryption through ARM (PATCH properties.encryption)"),
                       ("encryption_grpc", "set encryption over gRPC (SetEncryption, DisableEncryption)")):  # fmt: skip
        r = arm[key]
        lat = r["latency_ms"]
        lines.append(f"| {label} | {r['throughput_per_s']:.0f} | {lat['p50']:.1f} | {lat['p99']:.1f} | "
                     f"{sum(r['errors'].values())} | {r['trio_cpu_ms_per_call']} |")  # fmt: skip
    ratios = [round(arm[f"{k}_arm"]["throughput_per_s"] / arm[f"{k}_grpc"]["throughput_per_s"], 2)
              if arm[f"{k}_grpc"]["throughput_per_s"] else 0.0 for k in ("vault", "encryption")]  # fmt: skip
    lines += ["", f"Through ARM / over gRPC: vault creation {ratios[0]}, encryption changes {ratios[1]}."]
    return lines
