"""The asynchronous clients (azure.identity.aio, azure.keyvault.keys.aio and
azure.keyvault.secrets.aio) as a user's program runs them, in an interpreter of its own: aiohttp
reads the CA (SSL_CERT_FILE) when it is first imported, so Azure's defaults must be in the
environment when the program starts, as `cmk up`'s banner says to export them. Run by
tests/witness/test_python_sdks.py, which judges the JSON line it prints.

    WITNESS_WAY=explicit|defaults AZURE_TENANT_ID=... AZURE_CLIENT_ID=... AZURE_CLIENT_SECRET=...
    VAULT_URL=https://{vault}.vault.azure.net [CMK_AUTHORITY=... CMK_KEYVAULT_DOOR=... CMK_CA=...]
    python -m tests.witness.aio_sdks
"""

from __future__ import annotations

import asyncio
import json
import os

from azure.identity.aio import ClientSecretCredential
from azure.keyvault.keys.aio import KeyClient
from azure.keyvault.keys.crypto import KeyWrapAlgorithm
from azure.keyvault.keys.crypto.aio import CryptographyClient
from azure.keyvault.secrets.aio import SecretClient

from cmk_trio.client.azure import door_aio_transport


async def main() -> dict[str, object]:
    env = os.environ
    explicit = env["WITNESS_WAY"] == "explicit"
    secret = (env["AZURE_TENANT_ID"], env["AZURE_CLIENT_ID"], env["AZURE_CLIENT_SECRET"])
    if explicit:
        ca = env["CMK_CA"]
        credential = ClientSecretCredential(*secret, authority=env["CMK_AUTHORITY"], disable_instance_discovery=True,
                                            connection_verify=ca)  # fmt: skip
    else:
        credential = ClientSecretCredential(*secret)

    def options() -> dict[str, object]:  # (a transport of its own for each client, as each closes its own)
        return {"transport": door_aio_transport(env["CMK_KEYVAULT_DOOR"], ca=ca)} if explicit else {}

    vault_url = env["VAULT_URL"]
    async with credential, KeyClient(vault_url, credential, **options()) as keys:
        made = await keys.create_rsa_key("async-cmk", size=3072)
        async with CryptographyClient(made, credential, **options()) as crypto:
            wrapped = await crypto.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, b"a" * 32)
            unwrapped = await crypto.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key)
        listed = [k.name async for k in keys.list_properties_of_keys()]
        async with SecretClient(vault_url, credential, **options()) as secrets:
            set_value = (await secrets.set_secret("aio", "from-aio")).value
            got_value = (await secrets.get_secret("aio")).value
            secret_names = [p.name async for p in secrets.list_properties_of_secrets()]
    return {
        "key_id": made.id, "rsa": made.key_type == "RSA", "unwrapped": unwrapped.key.decode(), "keys": listed,
        "set": set_value, "got": got_value, "secrets": secret_names,
    }  # fmt: skip


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
