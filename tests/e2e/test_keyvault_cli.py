"""`cmk up` and the key vault commands, end to end with --output json: the flows of the key
vault issue through the CLI (run in this process) against the trio in a real process."""

from __future__ import annotations

import base64
import hashlib
import json
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.e2e.conftest import cmk, invoke, login_operator, start, stop
from tests.keyvault.test_crypto import private_jwk


def test_the_key_vault_flows_through_the_cli(trio, tmp_path):
    login_operator(trio)
    tenant = cmk(trio, "tenant", "create", "Contoso")["tenant_id"]
    sub = cmk(trio, "subscription", "create", "--tenant", tenant, "Production")["subscription_id"]
    admin = cmk(trio, "principal", "create", "--tenant", tenant, "--kind", "user", "--admin", "--with-secret", "Alice")
    cmk(
        trio, "role", "assign", "--principal", admin["object_id"], "--role", "owner", "--scope", f"/subscriptions/{sub}"
    )
    services = trio.banner["services"]
    cmk(trio, "login", "--endpoint", services["identity"], "--tenant", tenant, "--client-id", admin["client_id"],
        "--client-secret", admin["client_secret"], "--keyvault-endpoint", services["keyvault"])  # fmt: skip

    vault = cmk(trio, "vault", "create", "contoso-cmk", "--subscription", sub, "--resource-group", "rg",
                "--location", "westeurope", "--retention-days", "7", "--purge-protection")  # fmt: skip
    assert vault["vault_uri"] == "https://contoso-cmk.vault.azure.net/" and vault["purge_protection_enabled"]
    key = cmk(trio, "key", "create", "contoso-cmk", "cmk", "--size", "2048")
    assert key["key_id"].startswith("https://contoso-cmk.vault.azure.net/keys/cmk/")
    table = invoke(trio.env, "key", "show", key["key_id"])  # a table, with the profile's PKI
    assert table.exit_code == 0 and table.stdout.splitlines()[0] == f"Key Identifier: {key['key_id']}"

    data_key = base64.b64encode(os.urandom(32)).decode()
    wrapped = cmk(trio, "key", "wrap", key["key_id"], "--value", data_key)
    assert cmk(trio, "key", "unwrap", key["key_id"], "--value", wrapped["value"])["value"] == data_key
    # An EC key signs; the vault checks the signature.
    signer = cmk(trio, "key", "create", "contoso-cmk", "signer", "--curve", "P-384")
    assert signer["key_type"] == "EC" and signer["curve"] == "P_384" and signer["key_size"] == 384
    digest = base64.b64encode(hashlib.sha384(b"approved").digest()).decode()
    signed = cmk(trio, "key", "sign", signer["key_id"], "--algorithm", "ES384", "--digest", digest)
    assert len(base64.b64decode(signed["signature"])) == 96
    checked = cmk(trio, "key", "verify", signer["key_id"], "--algorithm", "ES384", "--digest", digest,
                  "--signature", signed["signature"])  # fmt: skip
    assert checked == {"key_id": signer["key_id"], "valid": True}
    mismatch = cmk(trio, "key", "sign", signer["key_id"], "--algorithm", "ES256", "--digest", digest, ok=False)
    assert mismatch["error"]["reason"] == "ALGORITHM_NOT_FOR_KEY"
    # A backup goes to a new file only its owner reads; it comes back after a purge.
    backup = tmp_path / "signer.backup"
    assert cmk(trio, "key", "backup", signer["key_id"], "--file", str(backup))["bytes"] == backup.stat().st_size
    assert backup.stat().st_mode & 0o777 == 0o600
    again = invoke(trio.env, "--tls-dir", trio.banner["tls_dir"], "key", "backup", signer["key_id"],
                   "--file", str(backup))  # fmt: skip
    assert again.exit_code == 2 and "exists" in again.output
    cmk(trio, "key", "delete", signer["key_id"])
    restored_over = cmk(trio, "key", "restore", "contoso-cmk", "--file", str(backup), ok=False)
    assert restored_over["error"]["reason"] == "KEY_EXISTS"  # (soft-deleted, its name is still taken)
    # Secrets: set from a file (not the command line), shown with the value, listed without it.
    value_file = tmp_path / "value.txt"
    value_file.write_text("p@ss-from-a-file")
    made = cmk(trio, "vault", "secret", "set", "contoso-cmk", "db-password", "--file", str(value_file),
               "--content-type", "text/plain")  # fmt: skip
    assert made["secret_id"].startswith("https://contoso-cmk.vault.azure.net/secrets/db-password/")
    assert not made.get("value")  # what was set is not printed back
    assert cmk(trio, "vault", "secret", "show", made["secret_id"])["value"] == "p@ss-from-a-file"
    listed = cmk(trio, "vault", "secret", "list", "contoso-cmk")["items"]
    assert [i["secret_id"] for i in listed] == [made["secret_id"]] and not listed[0].get("value")
    both = invoke(trio.env, "--tls-dir", trio.banner["tls_dir"], "vault", "secret", "set", "contoso-cmk", "x",
                  "--value", "1", "--file", str(value_file))  # fmt: skip
    assert both.exit_code == 2 and "exactly one" in both.output
    rotated = cmk(trio, "key", "rotate", key["key_id"])
    assert len(cmk(trio, "key", "versions", key["key_id"].rsplit("/", 1)[0])["items"]) == 2
    assert rotated["version"] != key["version"]
    cmk(trio, "key", "update", key["key_id"], "--disabled")
    refused = cmk(trio, "key", "unwrap", key["key_id"], "--value", wrapped["value"], ok=False)
    assert refused["error"]["reason"] == "KEY_DISABLED" and refused["error"]["metadata"]["akv_error"] == "KeyDisabled"
    cmk(trio, "key", "update", key["key_id"], "--enabled")

    app = cmk(trio, "principal", "create", "--tenant", tenant, "--kind", "service-principal", "--with-secret", "App")
    policies = cmk(trio, "vault", "policy", "set", "contoso-cmk", "--object-id", app["object_id"], "--tenant", tenant,
                   "--permissions", "get,unwrapKey", "--secret-permissions", "get")  # fmt: skip
    assert {p["object_id"] for p in policies["items"]} == {admin["object_id"], app["object_id"]}
    assert next(p for p in policies["items"] if p["object_id"] == app["object_id"])["secret_permissions"] == ["get"]
    bad = cmk(trio, "vault", "policy", "set", "contoso-cmk", "--object-id", app["object_id"], "--tenant", tenant,
              "--permissions", "get,exportKey", ok=False)  # fmt: skip
    assert bad["error"]["reason"] == "PERMISSION_UNKNOWN"

    cmk(trio, "key", "delete", key["key_id"])
    assert (
        cmk(trio, "key", "unwrap", key["key_id"], "--value", wrapped["value"], ok=False)["error"]["reason"]
        == "KEY_DELETED"
    )
    cmk(trio, "key", "recover", key["key_id"])
    assert cmk(trio, "key", "unwrap", key["key_id"], "--value", wrapped["value"])["value"] == data_key
    cmk(trio, "key", "delete", key["key_id"])
    assert cmk(trio, "key", "purge", key["key_id"], ok=False)["error"]["reason"] == "PURGE_PROTECTED"

    records = cmk(trio, "audit", "list", "--vault", "contoso-cmk", "--page-size", "500")["items"]
    assert {"CreateVault", "CreateKey", "WrapKey", "UnwrapKey", "DeleteKey", "PurgeDeletedKey"} <= {
        r["operation"] for r in records
    }
    assert any(r["result"] == "denied" and r["reason"] == "KEY_DISABLED" for r in records)

    # The operator moves both clocks past the retention date; then the purge goes through.
    login_operator(trio)
    assert cmk(trio, "clock", "advance", "--service", "identity", "--days", "8")["offset_seconds"] == 8 * 86400
    cmk(trio, "clock", "advance", "--service", "keyvault", "--days", "8")
    cmk(trio, "login", "--endpoint", services["identity"], "--tenant", tenant, "--client-id", admin["client_id"],
        "--client-secret", admin["client_secret"], "--keyvault-endpoint", services["keyvault"])  # fmt: skip
    cmk(trio, "key", "purge", key["key_id"])
    assert cmk(trio, "key", "create", "contoso-cmk", "cmk")["version"] not in (key["version"], rotated["version"])

    # The operator checks the log against a saved checkpoint.
    login_operator(trio)
    checkpoint = tmp_path / "checkpoint.json"
    cmk(trio, "audit", "checkpoint", "--out", str(checkpoint))
    verdict = cmk(trio, "audit", "verify", "--checkpoint", str(checkpoint))
    assert verdict["ok"] is True and int(verdict["records"]) >= int(json.loads(checkpoint.read_text())["count"])


def test_import_and_a_second_up_resumes_with_everything(trio, tmp_path, env):
    login_operator(trio)
    tenant = cmk(trio, "tenant", "create", "Contoso")["tenant_id"]
    sub = cmk(trio, "subscription", "create", "--tenant", tenant, "Production")["subscription_id"]
    operator = json.loads((trio.data_dir / "operator.json").read_text())
    # The operator owns nothing in a customer tenant: its vault calls are refused by role.
    refused = cmk(trio, "vault", "create", "opvault", "--subscription", sub, "--resource-group", "rg",
                  "--location", "westeurope", ok=False)  # fmt: skip
    assert refused["error"]["reason"] == "ROLE_REQUIRED"
    assert operator["client_secret"] not in stop(trio)

    again = start(trio.data_dir, env)
    try:
        assert again.banner["created_operator"] is None
        login_operator(again)
        assert tenant in {t["tenant_id"] for t in cmk(again, "tenant", "list")["items"]}
        admin = cmk(again, "principal", "create", "--tenant", tenant, "--kind", "user", "--admin", "--with-secret", "A")
        cmk(
            again,
            "role",
            "assign",
            "--principal",
            admin["object_id"],
            "--role",
            "owner",
            "--scope",
            f"/subscriptions/{sub}",
        )
        services = again.banner["services"]
        cmk(again, "login", "--endpoint", services["identity"], "--tenant", tenant, "--client-id", admin["client_id"],
            "--client-secret", admin["client_secret"], "--keyvault-endpoint", services["keyvault"])  # fmt: skip
        cmk(
            again,
            "vault",
            "create",
            "byok",
            "--subscription",
            sub,
            "--resource-group",
            "rg",
            "--location",
            "westeurope",
        )
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk_file = tmp_path / "key.jwk"
        jwk_file.write_text(json.dumps(private_jwk(private)))
        imported = cmk(again, "key", "import", "byok", "mine", "--jwk-file", str(jwk_file))
        oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
        wrapped = base64.b64encode(private.public_key().encrypt(b"k" * 32, oaep)).decode()
        unwrapped = cmk(again, "key", "unwrap", imported["key_id"], "--value", wrapped)
        assert base64.b64decode(unwrapped["value"]) == b"k" * 32
    finally:
        stop(again)
