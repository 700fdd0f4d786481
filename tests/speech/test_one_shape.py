"""The three services are served the same way: the same interceptors in the same order."""

from __future__ import annotations

from cmk_trio.identity.server import IdentityServer
from cmk_trio.keyvault.server import KeyVaultServer
from cmk_trio.speech.server import SpeechServer


async def test_the_three_services_register_the_same_interceptors_in_the_same_order(
    identity: IdentityServer, keyvault: KeyVaultServer, speech: SpeechServer
):
    chains = {s.running.interceptors for s in (identity, keyvault, speech)}
    assert chains == {("ObserveInterceptor", "ErrorInterceptor", "AuthInterceptor", "AdmissionInterceptor")}
