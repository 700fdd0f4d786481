"""Run inside a container of our image on the stack's network (mounted there by the test):
the client library reaching the services by their compose names over mutual TLS. Makes a
tenant and its owner, a vault and a key, wraps and unwraps a data key, and writes and reads an
application of a speech resource encrypted with that key. Prints what it saw as JSON."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from cmk_trio.client.channel import ChannelTls, open_channel
from cmk_trio.client.identity import ClientCredentials, IdentityClient
from cmk_trio.client.keyvault import KeyVaultClient
from cmk_trio.client.speech import SpeechClient
from cmk_trio.proto.identity.v1 import resources_pb2 as idres


async def main() -> dict[str, object]:
    tls = ChannelTls(Path("/tls/ca.crt"), Path("/tls/cli.crt"), Path("/tls/cli.key"))
    channels = {name: open_channel(f"{name}:{port}", tls) for name, port in
                (("identity", 50051), ("keyvault", 50052), ("speech", 50053))}  # fmt: skip
    content = json.loads(Path("/operator/operator.json").read_text())
    operator = IdentityClient(
        channels["identity"], ClientCredentials(content["tenant_id"], content["client_id"], content["client_secret"])
    )
    tag = os.urandom(3).hex()
    tenant = await operator.create_tenant(f"From a container {tag}")
    sub = await operator.create_subscription(tenant.tenant_id, "Containers")
    owner = await operator.create_principal(tenant.tenant_id, idres.USER, "Casey", tenant_admin=True)
    secret = await operator.add_client_secret(tenant.tenant_id, owner.object_id, "container")
    await operator.create_role_assignment(owner.object_id, idres.OWNER, f"/subscriptions/{sub.subscription_id}")
    casey = IdentityClient(channels["identity"], ClientCredentials(tenant.tenant_id, secret.client_id,
                                                                    secret.secret_value))  # fmt: skip
    vaults = KeyVaultClient(channels["keyvault"], casey.token_for)
    speech = SpeechClient(channels["speech"], casey.token_for)
    await vaults.create_vault(f"ctr-{tag}", sub.subscription_id, "rg", "westeurope", purge_protection=True)
    key = await vaults.create_key(f"ctr-{tag}", "cmk")
    data_key = os.urandom(32)
    wrapped = await vaults.wrap(key.key_id, data_key)
    unwrapped = await vaults.unwrap(key.key_id, wrapped.ciphertext)
    await speech.request_approval(sub.subscription_id, "container test")
    await SpeechClient(channels["speech"], operator.token_for).approve(sub.subscription_id, "container test")
    resource = await speech.create_resource(sub.subscription_id, "rg", f"speech-{tag}", "westeurope")
    # Speech grants the resource's managed identity access to the key itself (no skip_grant).
    await speech.set_encryption(resource.name, key_uri=key.key_id.rsplit("/", 1)[0],
                                key_subscription_id=sub.subscription_id)  # fmt: skip
    config = json.dumps({"from": "a container", "tag": tag})
    app = await speech.create_application(resource.name, "app", config)
    read = await speech.get_application(app.name)
    for channel in channels.values():
        await channel.close()
    return {"tenant": tenant.tenant_id, "key": key.key_id, "unwrapped_matches": unwrapped.plaintext == data_key,
            "application": app.name, "read_back_matches": read.configuration_json == config}  # fmt: skip


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
    sys.exit(0)
