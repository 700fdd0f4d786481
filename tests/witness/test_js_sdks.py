"""Microsoft's JavaScript SDKs, unmodified, run by node against a real trio: @azure/identity's
ClientSecretCredential signs in; @azure/keyvault-keys' KeyClient and CryptographyClient make
(RSA, EC on every curve), import (RSA, EC), read, list, update, rotate, use (wrap, encrypt,
sign and verify with every algorithm), back up and restore, delete, recover and purge keys,
and read and set a key's rotation policy; @azure/keyvault-secrets' SecretClient does all it
offers to secrets (js/witness.mjs). The access policy changed through the gRPC API between two
of its steps refuses, then allows again, the SDK's unwrap, and its secret half the SDK's get.
A second principal with sign and verify alone makes CryptographyClient verify through the
vault. Each way of naming the hosts once:

- explicit: the credential's `authorityHost` is identity's door (with
  `disableInstanceDiscovery`), and the clients' `agent` option dials the key vault's door for
  https://{vault}.vault.azure.net, TLS still checking the vault's name;
- defaults: nothing of ours in the code; HTTPS_PROXY is the trio's CONNECT proxy, which
  tunnels login.microsoftonline.com and *.vault.azure.net to the doors.

NODE_EXTRA_CA_CERTS is the trio's CA both ways. The node script only reports; what the SDK
must have seen is asserted here."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

from cmk_trio.client.identity import ClientCredentials, IdentityClient
from cmk_trio.client.keyvault import KeyVaultClient
from cmk_trio.launcher.trio import RunningTrio, start_trio
from cmk_trio.proto.identity.v1 import resources_pb2 as idres
from cmk_trio.proto.keyvault.v1 import resources_pb2 as res
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.channels import ChannelTls, open_channel
from cmk_trio.rpckit.clock import SystemClock
from cmk_trio.rpckit.devca import DevPki
from tests.conftest import operator_credentials
from tests.identity.helpers import TenantFixture, make_principal, make_tenant
from tests.witness.node_packages import ensure_node_packages

pytestmark = [pytest.mark.witness, pytest.mark.timeout(240)]

README = Path(__file__).resolve().parents[2] / "README.md"
PERMISSIONS = ["get", "list", "create", "update", "delete", "recover", "purge", "wrapKey", "unwrapKey",
               "encrypt", "decrypt", "rotate", "import", "sign", "verify", "backup", "restore", "getrotationpolicy",
               "setrotationpolicy"]  # fmt: skip
SECRET_PERMISSIONS = ["get", "list", "set", "delete", "recover", "purge", "backup", "restore"]
LINE_SECONDS = 120
"""How long one step of the script may take before the test gives up on it (a guard against
hanging, far above what a step takes)."""


@pytest.fixture(scope="session")
def node_packages() -> Path:
    return ensure_node_packages()


@dataclass
class Witnessed:
    """What the node script printed: each step's result or error, in order."""

    results: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, dict[str, Any]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    done: bool = False

    def ok(self, step: str) -> Any:
        assert step not in self.errors, f"{step}: {self.errors[step]} (first error: {self.first_error()})"
        assert step in self.results, f"{step} never ran (steps: {self.order})"
        return self.results[step]

    def refused(self, step: str) -> dict[str, Any]:
        assert step in self.errors, f"{step} was not refused: {self.results.get(step)}"
        return self.errors[step]

    def first_error(self) -> tuple[str, dict[str, Any]] | None:
        return next(((s, self.errors[s]) for s in self.order if s in self.errors), None)


@dataclass
class Trio:
    trio: RunningTrio
    ca: Path
    contoso: TenantFixture
    signer: tuple[idres.Principal, ClientCredentials]
    """A second principal of Contoso's whose access policy has sign and verify alone."""
    vaults: KeyVaultClient
    vault: str
    """Named anew for each test: the SDKs remember each vault's challenge (its tenant) for the
    life of the process, and a real vault's name is global."""

    @property
    def vault_url(self) -> str:
        return f"https://{self.vault}.vault.azure.net"


@pytest.fixture
async def trio(tmp_path: Path) -> AsyncIterator[Trio]:
    running = await start_trio(tmp_path / "data", mutual_tls=True, env={"CMK_SECRET_HASH_COST": "10"})
    try:
        assert running.tls_dir is not None
        pki = DevPki(running.tls_dir)
        cli = pki.identity("cli")
        tls = ChannelTls(pki.ca_file, cli.cert_file, cli.key_file)
        identity_channel = open_channel(running.endpoints["identity"], tls)
        vault_channel = open_channel(running.endpoints["keyvault"], tls)
        try:
            clock = SystemClock()
            operator = IdentityClient(identity_channel, operator_credentials(running.identity), clock=clock)
            contoso = await make_tenant(operator, identity_channel, clock, "Contoso")
            await operator.create_role_assignment(contoso.admin.object_id, idres.OWNER,
                                                  f"/subscriptions/{contoso.subscription_id}")  # fmt: skip
            vaults = KeyVaultClient(vault_channel, contoso.admin_client.token_for)
            vault = f"js-{uuid.uuid4().hex[:12]}"
            await vaults.create_vault(vault, contoso.subscription_id, "rg", "westeurope")
            await vaults.set_access_policy(vault, contoso.tenant_id, contoso.admin.object_id, PERMISSIONS,
                                           SECRET_PERMISSIONS)  # fmt: skip
            signer, signer_credentials, _ = await make_principal(operator, identity_channel, clock, contoso.tenant_id,
                                                                 "signer")  # fmt: skip
            await vaults.set_access_policy(vault, contoso.tenant_id, signer.object_id, ["sign", "verify"])
            yield Trio(running, pki.ca_file, contoso, (signer, signer_credentials), vaults, vault)
        finally:
            await identity_channel.close()
            await vault_channel.close()
    finally:
        await running.stop()


def node_environment(trio: Trio, way: str) -> dict[str, str]:
    """What node is given: the principal, the vault, the CA, and per way either our doors or
    the proxy. Nothing else from this process's environment but PATH and HOME, so that no
    proxy or CA of the machine's changes what is witnessed."""
    creds = trio.contoso.admin_credentials
    env = {
        "PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/"),
        "AZURE_TENANT_ID": creds.tenant_id, "AZURE_CLIENT_ID": creds.client_id,
        "AZURE_CLIENT_SECRET": creds.client_secret, "VAULT_URL": trio.vault_url,
        "SIGNER_CLIENT_ID": trio.signer[1].client_id, "SIGNER_CLIENT_SECRET": trio.signer[1].client_secret,
        "NODE_EXTRA_CA_CERTS": str(trio.ca),
    }  # fmt: skip
    if way == "explicit":
        assert trio.trio.identity.http_url and trio.trio.keyvault.http_url
        env["CMK_AUTHORITY"] = trio.trio.identity.http_url
        env["CMK_KEYVAULT_DOOR"] = trio.trio.keyvault.http_url.removeprefix("https://")
    else:
        assert trio.trio.proxy is not None
        env["HTTPS_PROXY"] = trio.trio.proxy.url
        env["NO_PROXY"] = "127.0.0.1,localhost"
    return env


async def run_witness(
    packages: Path, env: dict[str, str], when: dict[str, Callable[[], Awaitable[object]]], script: str = "witness.mjs"
) -> Witnessed:
    """Run js/`script`, doing `when[name]` (through the gRPC API) each time it awaits `name`."""
    node = await asyncio.create_subprocess_exec(
        node_path(), str(packages / script), cwd=packages, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert node.stdin is not None and node.stdout is not None and node.stderr is not None
    seen = Witnessed()
    try:
        while line := await asyncio.wait_for(node.stdout.readline(), LINE_SECONDS):
            said = json.loads(line)
            if "await" in said:
                await when[said["await"]]()
                node.stdin.write(b"go\n")
                await node.stdin.drain()
            elif "done" in said:
                seen.done = True
            elif "error" in said:
                seen.order.append(said["step"])
                seen.errors[said["step"]] = said["error"]
            else:
                seen.order.append(said["step"])
                seen.results[said["step"]] = said["result"]
        err = await asyncio.wait_for(node.stderr.read(), LINE_SECONDS)
        assert await node.wait() == 0 and seen.done, f"node exited {node.returncode}: {err.decode()[-3000:]}"
    finally:
        if node.returncode is None:
            node.kill()
            await node.wait()
    return seen


def node_path() -> str:
    found = shutil.which("node")
    assert found, "node is not on PATH"
    return found


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.mark.parametrize("way", ["explicit", "defaults"])
async def test_the_javascript_sdks_against_the_doors(trio: Trio, node_packages: Path, way: str) -> None:
    contoso, vaults = trio.contoso, trio.vaults

    async def revoke() -> None:
        await vaults.update_access_policy(trio.vault, contoso.tenant_id, contoso.admin.object_id, remove=["unwrapKey"])

    async def restore() -> None:
        await vaults.update_access_policy(trio.vault, contoso.tenant_id, contoso.admin.object_id, add=["unwrapKey"])

    async def revoke_secret_get() -> None:
        await vaults.update_access_policy(trio.vault, contoso.tenant_id, contoso.admin.object_id,
                                          remove_secrets=["get"])  # fmt: skip

    async def restore_secret_get() -> None:
        await vaults.update_access_policy(trio.vault, contoso.tenant_id, contoso.admin.object_id, add_secrets=["get"])

    seen = await run_witness(
        node_packages, node_environment(trio, way),
        {"unwrap-revoked": revoke, "unwrap-restored": restore, "secret-get-revoked": revoke_secret_get,
         "secret-get-restored": restore_secret_get},
    )  # fmt: skip

    # Signed in: a vault token of Contoso's, for this principal.
    token = seen.ok("sign-in")
    assert token["aud"] == audiences.VAULT and token["tid"] == contoso.tenant_id
    assert token["appid"] == contoso.admin_credentials.client_id

    # Keys made, read, listed; the same keys as the gRPC API sees.
    made = seen.ok("create-rsa-2048")
    assert made["id"].startswith(f"{trio.vault_url}/keys/witness-2048/") and made["keyType"] == "RSA"
    assert len(unb64url(made["n"])) == 256 and made["e"] == "AQAB"
    props = made["properties"]
    assert props["enabled"] is True and props["tags"] == {"team": "speech"}
    assert props["recoveryLevel"] == "Recoverable+Purgeable" and props["vaultUrl"] == trio.vault_url
    assert (await vaults.get_key(made["id"])).version == props["version"]
    big = seen.ok("create-rsa-3072")
    assert len(unb64url(big["n"])) == 384
    assert seen.ok("get-latest")["id"] == made["id"] and seen.ok("get-latest")["n"] == made["n"]
    assert seen.ok("get-by-version")["id"] == big["id"]
    imported = seen.ok("import")
    assert imported["sameN"] is True and imported["properties"]["tags"] == {"origin": "node"}
    assert (await vaults.get_key(imported["id"])).version == imported["properties"]["version"]
    assert sorted(k["name"] for k in seen.ok("list-keys")) == ["witness-2048", "witness-3072", "witness-imported"]

    # Properties updated by version, then by name alone (the latest version).
    disabled = seen.ok("update-tags-and-disable")["properties"]
    assert disabled["enabled"] is False and disabled["tags"] == {"team": "speech", "cmk": "yes"}
    refused = seen.refused("unwrap-while-disabled")
    assert (refused["statusCode"], refused["code"], refused["innerCode"]) == (403, "Forbidden", "KEY_DISABLED")
    enabled = seen.ok("update-enable")["properties"]
    assert enabled["enabled"] is True and enabled["tags"] == {"team": "speech", "cmk": "yes"}
    assert enabled["version"] == props["version"]

    # Rotated: a second version, listed whole and one a page (the door's nextLink followed).
    rotated = seen.ok("rotate")
    assert rotated["name"] == "witness-2048" and rotated["properties"]["version"] != props["version"]
    versions = {props["version"], rotated["properties"]["version"]}
    assert {v["version"] for v in seen.ok("list-versions")} == versions
    pages = seen.ok("list-versions-one-a-page")
    # (A full page has a nextLink even when nothing follows, as Key Vault's own pages may: the
    # SDK follows it to an empty last page.)
    assert all(len(p) <= 1 for p in pages)
    assert sorted(v for p in pages for v in p) == sorted(versions)
    assert (await vaults.get_key(rotated["id"])).version == rotated["properties"]["version"]

    # Wrapped and encrypted (locally with the public key, or by the vault), unwrapped and
    # decrypted by the vault; what the SDK wrapped, the gRPC API unwraps too.
    for alg in ("RSA-OAEP-256", "RSA-OAEP"):
        wrapped = seen.ok(f"wrap-{alg}")
        assert wrapped["keyID"] == made["id"]
        assert seen.ok(f"unwrap-{alg}") == {"keyID": made["id"], "equal": True}
        grpc_alg = res.RSA_OAEP_256 if alg == "RSA-OAEP-256" else res.RSA_OAEP
        unwrapped = await vaults.unwrap(made["id"], unb64url(wrapped["wrapped"]), grpc_alg)
        assert unwrapped.plaintext == unb64url(wrapped["plaintext"])
    for alg in ("RSA-OAEP", "RSA-OAEP-256", "RSA1_5"):
        assert seen.ok(f"encrypt-{alg}")["keyID"] == made["id"]
        assert seen.ok(f"decrypt-{alg}") == {"plaintext": "witnessed by @azure/keyvault-keys"}
    assert seen.ok("unwrap-imported") == {"equal": True}
    assert seen.ok("wrap-unwrap-3072") == {"keyID": big["id"], "length": 384, "equal": True}

    # Revocation end to end: unwrapKey out of the access policy between two unwraps of the
    # same client; Key Vault's 403 with our reason; back in, allowed again.
    assert seen.ok("revocation-unwrap-allowed") == {"equal": True}
    refused = seen.refused("revocation-unwrap-refused")
    assert (refused["statusCode"], refused["code"], refused["innerCode"]) == (403, "Forbidden", "FORBIDDEN_BY_POLICY")
    assert seen.ok("revocation-unwrap-allowed-again") == {"equal": True}

    # Soft-delete as the SDK's pollers drive it, recovery, purge.
    deleted = seen.ok("delete")["properties"]
    assert deleted["recoveryId"] == f"{trio.vault_url}/deletedkeys/witness-3072"
    assert deleted["deletedOn"] and deleted["scheduledPurgeDate"] > deleted["deletedOn"]
    gone = seen.refused("get-after-delete")
    assert (gone["statusCode"], gone["code"]) == (404, "KeyNotFound")
    assert seen.ok("get-deleted")["properties"]["recoveryId"] == deleted["recoveryId"]
    assert [k["name"] for k in seen.ok("list-deleted")] == ["witness-3072"]
    assert seen.ok("recover")["id"] == big["id"] and seen.ok("get-after-recover")["id"] == big["id"]
    assert seen.ok("delete-again")["name"] == "witness-3072"
    assert seen.ok("purge") is None
    purged = seen.refused("get-deleted-after-purge")
    assert (purged["statusCode"], purged["code"]) == (404, "KeyNotFound")

    await signatures_witnessed(trio, seen, made)
    await backup_witnessed(trio, seen)
    rotation_policy_witnessed(trio, seen)
    secrets_witnessed(trio, seen)

    assert set(seen.errors) == {
        "unwrap-while-disabled", "revocation-unwrap-refused", "get-after-delete", "get-deleted-after-purge",
        "sign-ES256-with-rsa-key", "backup-get-deleted-after-purge", "restore-over-existing", "restore-altered",
        "secret-get-disabled", "secret-get-after-delete", "secret-get-deleted-after-purge",
        "secret-get-disabled-after-restore", "secret-get-refused",
    }  # fmt: skip
    if way == "defaults":
        assert trio.trio.proxy is not None and trio.trio.proxy.count.refused == 0


def refusal(seen: Witnessed, step: str) -> tuple[int, str, str]:
    refused = seen.refused(step)
    return refused["statusCode"], refused["code"], refused["innerCode"]


async def signatures_witnessed(trio: Trio, seen: Witnessed, rsa_key: dict[str, Any]) -> None:
    """EC keys on every curve and the RSA key sign through the vault; each signature is checked
    here with the public key the SDK was given, by the vault for both principals (the signer,
    without get, makes the SDK ask the vault even where it would check locally), and an
    altered digest is not valid."""
    curves = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
    signed_by: dict[str, dict[str, Any]] = {}
    for curve, alg in curves.items():
        made = seen.ok(f"create-ec-{curve}")
        assert made["id"].startswith(f"{trio.vault_url}/keys/witness-ec-{curve[2:]}/")
        assert (made["keyType"], made["crv"], made["keyOperations"]) == ("EC", curve, ["sign", "verify"])
        assert made["properties"]["recoveryLevel"] == "Recoverable+Purgeable"
        assert (await trio.vaults.get_key(made["id"])).curve == getattr(res, curve.replace("-", "_"))
        signed_by[alg] = made
    for alg in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"):
        signed_by[alg] = rsa_key
    for alg, key in signed_by.items():
        signed = seen.ok(f"sign-{alg}")
        assert (signed["keyID"], signed["algorithm"]) == (key["id"], alg)
        signature, digest = unb64url(signed["signature"]), unb64url(signed["digest"])
        check_signature(key, alg, digest, signature)  # (raises InvalidSignature)
        for who in ("", "-as-signer"):
            assert seen.ok(f"verify-{alg}{who}") == {"keyID": key["id"], "result": True}
            assert seen.ok(f"verify-{alg}-altered{who}") == {"keyID": key["id"], "result": False}
        by_grpc = await trio.vaults.verify(key["id"], getattr(res, alg), digest, signature)
        assert by_grpc.valid
    for alg in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"):
        assert seen.ok(f"verify-data-{alg}-as-signer") == {"keyID": rsa_key["id"], "result": True}
        # verifyData with the key fetched is the SDK's own check, in node, not the vault's: it
        # hands node's verifier the PEM alone, whose default padding is PKCS #1 v1.5, so a PSS
        # signature (valid: checked above, here and by the vault) is reported not valid.
        assert seen.ok(f"verify-data-{alg}") == {"keyID": rsa_key["id"], "result": alg.startswith("RS")}
    # Which checks went to the vault: every `verify` (a digest; the SDK has no local check for
    # one), and `verifyData` for the signer alone.
    audit = (await trio.vaults.list_audit(trio.vault, page_size=1000)).records
    verified = [r.caller_object_id for r in audit if r.operation == "Verify" and r.result == "allowed"]
    assert verified.count(trio.signer[0].object_id) == 2 * 9 + 6
    assert verified.count(trio.contoso.admin.object_id) == 2 * 9 + 9  # (and the 9 over gRPC above)
    assert refusal(seen, "sign-ES256-with-rsa-key") == (400, "BadParameter", "ALGORITHM_NOT_FOR_KEY")

    # An EC private key made by node, imported: the vault's public half is node's, and it signs.
    imported = seen.ok("import-ec")
    assert imported["sameXY"] is True and (imported["keyType"], imported["crv"]) == ("EC", "P-256")
    assert (await trio.vaults.get_key(imported["id"])).curve == res.P_256
    by_node = seen.ok("sign-imported-ec")
    assert by_node["keyID"] == imported["id"]
    check_signature({"crv": "P-256", "x": by_node["x"], "y": by_node["y"]}, "ES256", unb64url(by_node["digest"]),
                    unb64url(by_node["signature"]))  # fmt: skip


HASHES: dict[str, hashes.HashAlgorithm] = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}
CURVES: dict[str, ec.EllipticCurve] = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}


def check_signature(jwk: dict[str, Any], alg: str, digest: bytes, signature: bytes) -> None:
    """`signature` over `digest` by the private half of the public JWK `jwk`, as JWA's `alg` says
    (PSS with a salt as long as the digest, as Key Vault signs), or InvalidSignature."""
    hashing = HASHES[alg[2:]]
    if alg.startswith("ES"):
        curve = CURVES[jwk["crv"]]
        x, y = (int.from_bytes(unb64url(jwk[c])) for c in ("x", "y"))
        half = len(signature) // 2
        der = encode_dss_signature(int.from_bytes(signature[:half]), int.from_bytes(signature[half:]))
        public = ec.EllipticCurvePublicNumbers(x, y, curve).public_key()
        public.verify(der, digest, ec.ECDSA(Prehashed(hashing)))
        return
    n, e = (int.from_bytes(unb64url(jwk[c])) for c in ("n", "e"))
    pad = (padding.PSS(mgf=padding.MGF1(hashing), salt_length=hashing.digest_size) if alg.startswith("PS")
           else padding.PKCS1v15())  # fmt: skip
    rsa.RSAPublicNumbers(e, n).public_key().verify(signature, digest, pad, Prehashed(hashing))


async def backup_witnessed(trio: Trio, seen: Witnessed) -> None:
    """A key of two versions backed up, deleted and purged, restored whole."""
    made, rotated = seen.ok("backup-create"), seen.ok("backup-rotate")
    assert made["properties"]["tags"] == {"why": "backup"}
    assert seen.ok("backup-wrap")["keyID"] == made["id"]
    assert seen.ok("backup-key")["length"] > 2 * 1200  # (two versions' private keys, sealed)
    assert seen.ok("backup-delete")["name"] == "witness-kept" and seen.ok("backup-purge") is None
    assert refusal(seen, "backup-get-deleted-after-purge") == (404, "KeyNotFound", "DELETED_KEY_NOT_FOUND")
    restored = seen.ok("restore-key")
    assert restored["id"] == rotated["id"] and restored["n"] == rotated["n"]
    assert restored["properties"]["tags"] == {"why": "backup"}
    versions = {v["version"] for v in seen.ok("restore-list-versions")}
    assert versions == {made["properties"]["version"], rotated["properties"]["version"]}
    assert seen.ok("restore-unwrap") == {"keyID": made["id"], "equal": True}
    assert (await trio.vaults.get_key(restored["id"])).version == rotated["properties"]["version"]
    assert refusal(seen, "restore-over-existing") == (409, "Conflict", "KEY_EXISTS")
    assert refusal(seen, "restore-altered") == (400, "BadParameter", "BACKUP_INVALID")


def rotation_policy_witnessed(trio: Trio, seen: Witnessed) -> None:
    policy_id = f"{trio.vault_url}/keys/witness-2048/rotationpolicy"
    # (What a key without a policy shows is the engine's: no action. Key Vault shows a Notify
    # 30 days before expiry there; not asserted, reported.)
    assert seen.ok("rotation-policy-unset")["id"] == policy_id
    wanted = [{"action": "Rotate", "timeAfterCreate": "P90D"}, {"action": "Notify", "timeBeforeExpiry": "P30D"}]
    for step in ("rotation-policy-update", "rotation-policy-get"):
        policy = seen.ok(step)
        assert (policy["id"], policy["expiresIn"], policy["lifetimeActions"]) == (policy_id, "P2Y", wanted)
        assert policy["createdOn"] and policy["updatedOn"]


def secrets_witnessed(trio: Trio, seen: Witnessed) -> None:
    """SecretClient, what it offers, and the secret half of the access policy."""
    first, second = seen.ok("secret-set"), seen.ok("secret-set-second")
    props = first["properties"]
    assert props["id"].startswith(f"{trio.vault_url}/secrets/witness-password/") and props["vaultUrl"] == trio.vault_url
    assert (first["name"], first["value"], props["contentType"], props["tags"]) == (
        "witness-password", "s3cr3t-value", "text/plain", {"app": "web"})  # fmt: skip
    assert props["enabled"] is True and props["recoveryLevel"] == "Recoverable+Purgeable"
    v1, v2 = props["version"], second["properties"]["version"]
    assert second["value"] == "rotated" and v2 != v1 and second["properties"]["tags"] == {}
    assert seen.ok("secret-set-other")["value"] == "k3y"
    latest = seen.ok("secret-get-latest")
    assert (latest["value"], latest["properties"]["version"]) == ("rotated", v2)
    by_version = seen.ok("secret-get-by-version")
    assert (by_version["value"], by_version["properties"]["version"]) == ("s3cr3t-value", v1)
    assert by_version["properties"]["contentType"] == "text/plain"
    listed = seen.ok("secret-list")
    assert sorted(p["name"] for p in listed) == ["witness-api-key", "witness-password"]
    assert all("/secrets/" in p["id"] and p["id"].count("/") == 4 for p in listed)  # (no version in a listing's id)
    assert {p["version"] for p in seen.ok("secret-list-versions")} == {v1, v2}
    pages = seen.ok("secret-list-versions-one-a-page")
    assert all(len(p) <= 1 for p in pages) and sorted(v for p in pages for v in p) == sorted([v1, v2])

    disabled = seen.ok("secret-update-disable")
    assert (disabled["version"], disabled["enabled"], disabled["tags"]) == (v1, False, {"app": "web"})
    assert refusal(seen, "secret-get-disabled") == (403, "Forbidden", "SECRET_DISABLED")
    retagged = seen.ok("secret-update-tags")
    assert (retagged["version"], retagged["contentType"], retagged["tags"]) == (
        v2, "text/plain", {"app": "web", "rotated": "yes"})  # fmt: skip
    assert seen.ok("secret-backup")["length"] > 0

    # Soft-delete as the SDK's pollers drive it, recovery, purge, and the backup restored.
    deleted = seen.ok("secret-delete")
    assert deleted["recoveryId"] == f"{trio.vault_url}/deletedsecrets/witness-password"
    assert deleted["deletedOn"] and deleted["scheduledPurgeDate"] > deleted["deletedOn"]
    assert "value" not in deleted  # (a deleted secret's value is not shown)
    assert refusal(seen, "secret-get-after-delete") == (404, "SecretNotFound", "SECRET_DELETED")
    assert seen.ok("secret-get-deleted")["recoveryId"] == deleted["recoveryId"]
    assert [d["name"] for d in seen.ok("secret-list-deleted")] == ["witness-password"]
    assert seen.ok("secret-recover")["version"] == v2
    assert seen.ok("secret-get-after-recover")["value"] == "rotated"
    assert seen.ok("secret-delete-again")["name"] == "witness-password" and seen.ok("secret-purge") is None
    assert refusal(seen, "secret-get-deleted-after-purge") == (404, "SecretNotFound", "DELETED_SECRET_NOT_FOUND")
    restored = seen.ok("secret-restore")
    assert (restored["version"], restored["tags"], restored["contentType"]) == (
        v2, {"app": "web", "rotated": "yes"}, "text/plain")  # fmt: skip
    assert seen.ok("secret-get-after-restore")["value"] == "rotated"
    # Every version came back as it was: the first still disabled.
    assert refusal(seen, "secret-get-disabled-after-restore") == (403, "Forbidden", "SECRET_DISABLED")

    # get taken out of the secret half of the access policy through gRPC, then put back.
    assert refusal(seen, "secret-get-refused") == (403, "Forbidden", "FORBIDDEN_BY_POLICY")
    assert seen.ok("secret-get-allowed-again")["value"] == "rotated"


def readme_block() -> str:
    found = re.search(r"<!-- azure-sdk-js -->\n```js\n(.*?)\n```", README.read_text(), re.S)
    assert found, "the README has no azure-sdk-js block"
    return found.group(1)


async def test_the_readme_block_runs_as_written(trio: Trio, node_packages: Path) -> None:
    """The README's JavaScript example, given only what its variables ask for."""
    # Beside node_modules (where its imports resolve), named for this run alone.
    script = node_packages / f"readme-{uuid.uuid4().hex[:12]}.mjs"
    script.write_text(readme_block())
    env = node_environment(trio, "explicit")
    env |= {"VAULT_NAME": trio.vault, "CMK_IDENTITY_HTTPS": env.pop("CMK_AUTHORITY")}
    del env["VAULT_URL"]
    try:
        run = await asyncio.create_subprocess_exec(
            node_path(), str(script), cwd=node_packages, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(run.communicate(), LINE_SECONDS)
    finally:
        script.unlink()
    assert run.returncode == 0, err.decode()[-3000:]
    key_id, size = out.decode().split()
    assert key_id.startswith(f"{trio.vault_url}/keys/js-cmk/") and size == "32"
    assert (await trio.vaults.get_key(key_id)).key_id == key_id  # the same key, over gRPC
