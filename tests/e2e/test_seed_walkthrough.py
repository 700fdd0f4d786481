"""The seed document, top to bottom, through `cmk --output json` against the three services
started by `cmk up`: request CMK, create a resource, store data, configure the vault, enable
customer-managed keys by key URI, rotate and update the version, use a different key,
revoke and restore access, disable CMK, and check the audit trail."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.e2e.conftest import Trio, cmk, invoke, login_operator

CONFIG = {"commands": [{"name": "TurnOnTheLight", "phrases": ["turn on the light"]}], "secret": "seed-config-secret"}


def ciphertexts(data_dir: Path) -> list[bytes]:
    with sqlite3.connect(data_dir / "speech.db") as db:
        rows = db.execute("SELECT sealed_configuration FROM applications ORDER BY seq").fetchall()
        rows += db.execute("SELECT sealed FROM luis_keys").fetchall()
    return [bytes(r[0]) for r in rows]


def login_admin(trio: Trio, tenant: str, admin: dict[str, str]) -> None:
    s = trio.banner["services"]
    cmk(trio, "login", "--endpoint", s["identity"], "--tenant", tenant, "--client-id", admin["client_id"],
        "--client-secret", admin["client_secret"], "--keyvault-endpoint", s["keyvault"],
        "--speech-endpoint", s["speech"])  # fmt: skip


def test_the_seed_document_end_to_end(trio, tmp_path):
    data_dir = trio.data_dir
    login_operator(trio)
    services = trio.banner["services"]
    cmk(trio, "login", "--endpoint", services["identity"], "--operator-file", str(data_dir / "operator.json"),
        "--keyvault-endpoint", services["keyvault"], "--speech-endpoint", services["speech"])  # fmt: skip
    tenant = cmk(trio, "tenant", "create", "Contoso")["tenant_id"]
    sub = cmk(trio, "subscription", "create", "--tenant", tenant, "Production")["subscription_id"]
    admin = cmk(trio, "principal", "create", "--tenant", tenant, "--kind", "user", "--admin", "--with-secret", "Ava")
    cmk(
        trio, "role", "assign", "--principal", admin["object_id"], "--role", "owner", "--scope", f"/subscriptions/{sub}"
    )
    login_admin(trio, tenant, admin)

    # "Customer-managed keys are only available to resources created after approval": a resource
    # made before the request cannot use them, and the refusal says what to do.
    early = cmk(trio, "speech", "create", "early", "--subscription", sub, "--resource-group", "rg",
                "--location", "westeurope")  # fmt: skip
    cmk(trio, "vault", "create", "contoso-cmk", "--subscription", sub, "--resource-group", "rg",
        "--location", "westeurope", "--purge-protection")  # fmt: skip
    key = cmk(trio, "key", "create", "contoso-cmk", "cmk", "--size", "2048")
    refused = cmk(trio, "speech", "encryption", "set", early["name"], "--key-uri", key["key_id"],
                  "--key-subscription", sub, ok=False)  # fmt: skip
    assert refused["error"]["reason"] == "CMK_NOT_APPROVED" and "create a new" in refused["error"]["message"]

    # "To request the ability to use customer-managed keys, fill out and submit the request form."
    assert cmk(trio, "speech", "cmk-approval", "request", "--subscription", sub)["state"] == "REQUESTED"
    login_operator(trio)
    assert cmk(trio, "speech", "cmk-approval", "approve", "--subscription", sub)["state"] == "APPROVED"
    login_admin(trio, tenant, admin)

    # "Once approved ... you need to create a new Speech resource": always Microsoft-managed at first.
    resource = cmk(trio, "speech", "create", "contoso-speech", "--subscription", sub, "--resource-group", "rg",
                   "--location", "westeurope", "--tier", "S0")  # fmt: skip
    rid = resource["name"]
    assert resource["encryption"]["key_source"] == "MICROSOFT_MANAGED"
    config_file = tmp_path / "app.json"
    config_file.write_text(json.dumps(CONFIG))
    app = cmk(trio, "speech", "app", "create", rid, "--name", "Lights", "--config-file", str(config_file))
    cmk(
        trio,
        "speech",
        "luis-keys",
        "set",
        rid,
        "--authoring-key",
        "luis-author-123",
        "--prediction-key",
        "luis-pred-456",
    )
    stored = ciphertexts(data_dir)

    # "Specify a key as a URI ... and the subscription that contains the key vault."
    enabled = cmk(trio, "speech", "encryption", "set", rid, "--key-uri", key["key_id"], "--key-subscription", sub)
    assert (enabled["key_source"], enabled["key_version"], enabled["status"]) == (
        "CUSTOMER_MANAGED",
        key["version"],
        "HEALTHY",
    )
    identity = enabled["identity"]["principal_id"]
    assert json.loads(cmk(trio, "speech", "app", "show", app["name"])["configuration_json"]) == CONFIG
    assert cmk(trio, "speech", "luis-keys", "show", rid)["authoring_key"] == "luis-author-123"

    # "Update the key version": rotate, point the resource at the new version; no re-encryption.
    newer = cmk(trio, "key", "rotate", key["key_id"])
    updated = cmk(trio, "speech", "encryption", "set", rid, "--key-uri", newer["key_id"], "--key-subscription", sub,
                  "--no-grant")  # fmt: skip
    assert updated["key_version"] == newer["version"]
    cmk(trio, "key", "update", key["key_id"], "--disabled")  # the old version is no longer needed
    assert json.loads(cmk(trio, "speech", "app", "show", app["name"])["configuration_json"]) == CONFIG
    assert ciphertexts(data_dir) == stored

    # "Use a different key": select it from the vault.
    other = cmk(trio, "key", "create", "contoso-cmk", "other")
    moved = cmk(trio, "speech", "encryption", "set", rid, "--vault", "contoso-cmk", "--key", "other", "--no-grant")
    assert moved["key_version"] == other["version"] and ciphertexts(data_dir) == stored

    # "Revoke access": all data becomes unreadable, with the cause; restoring access brings it back.
    cmk(trio, "vault", "policy", "delete", "contoso-cmk", "--object-id", identity)
    revoked = cmk(trio, "speech", "app", "show", app["name"], ok=False)
    assert revoked["error"]["reason"] == "CUSTOMER_KEY_ACCESS_REVOKED"
    assert cmk(trio, "speech", "luis-keys", "show", rid, ok=False)["error"]["reason"] == "CUSTOMER_KEY_ACCESS_REVOKED"
    status = cmk(trio, "speech", "encryption", "show", rid)
    assert (status["status"], status["inaccessible_reason"]) == ("KEY_INACCESSIBLE", "CUSTOMER_KEY_ACCESS_REVOKED")
    cmk(trio, "vault", "policy", "set", "contoso-cmk", "--object-id", identity, "--tenant", tenant,
        "--permissions", "get,wrapKey,unwrapKey")  # fmt: skip
    assert json.loads(cmk(trio, "speech", "app", "show", app["name"])["configuration_json"]) == CONFIG

    # "Disable customer-managed keys": back to Microsoft-managed; the vault no longer matters.
    assert cmk(trio, "speech", "encryption", "disable", rid)["key_source"] == "MICROSOFT_MANAGED"
    cmk(trio, "vault", "policy", "delete", "contoso-cmk", "--object-id", identity)
    assert cmk(trio, "speech", "luis-keys", "show", rid)["prediction_key"] == "luis-pred-456"
    assert ciphertexts(data_dir) == stored
    raw = b"".join(p.read_bytes() for p in data_dir.glob("speech.db*"))
    assert b"seed-config-secret" not in raw and b"luis-author-123" not in raw

    # "You can also audit the encryption keys used to protect your data."
    records = cmk(trio, "audit", "list", "--vault", "contoso-cmk", "--page-size", "1000")["items"]
    unwraps = [r for r in records if r["operation"] == "UnwrapKey"]
    assert any(r["caller_object_id"] == identity and r["result"] == "allowed" for r in unwraps)
    assert any(r["caller_object_id"] == identity and r["reason"] == "FORBIDDEN_BY_POLICY" for r in unwraps)
    login_operator(trio)
    assert cmk(trio, "audit", "verify")["ok"] is True


def test_cmk_demo_passes_against_a_running_trio(trio):
    s = trio.banner["services"]
    demo = cmk(trio, "--endpoint", s["identity"], "--keyvault-endpoint", s["keyvault"], "--speech-endpoint",
               s["speech"], "demo", "--data-dir", str(trio.data_dir))  # fmt: skip
    assert demo["ok"] is True and len(demo["steps"]) == 13
    assert all(step["ok"] for step in demo["steps"])
    assert "byte-for-byte the same" in next(st["detail"] for st in demo["steps"] if "ciphertext" in st["step"])


def test_cmk_up_serves_metrics_for_each_service_and_the_process_once(trio):
    import urllib.request

    metrics = trio.banner["metrics"]
    assert set(metrics) == {"identity", "keyvault", "speech"}
    login_operator(trio)  # makes calls on identity
    texts = {}
    for service, url in metrics.items():
        with urllib.request.urlopen(url, timeout=5) as reply:  # noqa: S310 (loopback)
            texts[service] = reply.read().decode()
    text = texts["identity"]
    assert 'grpc_method="IssueToken",grpc_service="cmk.identity.v1.TokenService"' in text
    assert 'grpc_server_msg_received_total{grpc_method="IssueToken"' in text
    assert "cmk_event_lag_seconds" in text
    # One process, one set of its own series: a sum across the three targets is the truth.
    for family in ("process_cpu_seconds_total", "process_resident_memory_bytes", "python_info"):
        assert sum(f"\n{family}" in t for t in texts.values()) == 1, family


def test_the_seed_flows_hold_after_the_three_clocks_move_91_days(trio, tmp_path):
    """`cmk clock advance` moves all three services by default, so tokens and dates agree:
    after 91 days (past a 90-day purge protection) the customer-managed data is still read
    through a fresh managed-identity token, and the deleted key can finally be purged. A
    profile's token, expired by the move, is renewed or the command to renew it named."""
    login_operator(trio)
    tenant = cmk(trio, "tenant", "create", "Fabrikam")["tenant_id"]
    sub = cmk(trio, "subscription", "create", "--tenant", tenant, "Production")["subscription_id"]
    admin = cmk(trio, "principal", "create", "--tenant", tenant, "--kind", "user", "--admin", "--with-secret", "Bo")
    cmk(
        trio, "role", "assign", "--principal", admin["object_id"], "--role", "owner", "--scope", f"/subscriptions/{sub}"
    )
    login_admin(trio, tenant, admin)
    cmk(trio, "speech", "cmk-approval", "request", "--subscription", sub)
    login_operator(trio)
    cmk(trio, "speech", "cmk-approval", "approve", "--subscription", sub)
    login_admin(trio, tenant, admin)
    cmk(trio, "vault", "create", "fabrikam-cmk", "--subscription", sub, "--resource-group", "rg",
        "--location", "westeurope", "--purge-protection")  # fmt: skip
    key = cmk(trio, "key", "create", "fabrikam-cmk", "cmk")
    doomed = cmk(trio, "key", "create", "fabrikam-cmk", "doomed")
    rid = cmk(trio, "speech", "create", "fabrikam-speech", "--subscription", sub, "--resource-group", "rg",
              "--location", "westeurope")["name"]  # fmt: skip
    config_file = tmp_path / "app.json"
    config_file.write_text(json.dumps(CONFIG))
    app = cmk(trio, "speech", "app", "create", rid, "--name", "Lights", "--config-file", str(config_file))
    cmk(trio, "speech", "encryption", "set", rid, "--key-uri", key["key_id"], "--key-subscription", sub)
    cmk(trio, "key", "delete", doomed["key_id"])
    assert cmk(trio, "key", "purge", doomed["key_id"], ok=False)["error"]["reason"] == "PURGE_PROTECTED"

    services = trio.banner["services"]
    cmk(trio, "--profile", "bo", "login", "--endpoint", services["identity"], "--tenant", tenant, "--client-id",
        admin["client_id"], "--client-secret", admin["client_secret"],
        "--keyvault-endpoint", services["keyvault"])  # fmt: skip
    login_operator(trio)
    moved = cmk(trio, "clock", "advance", "--days", "91")["services"]
    assert {m["service"]: m["offset_seconds"] for m in moved} == dict.fromkeys(
        ("identity", "keyvault", "speech"), 91 * 86400
    )
    # The profiles' tokens are now expired on the services' clocks: the operator's renews from
    # its operator file; Bo's, signed in with a secret it does not keep, names the command.
    assert cmk(trio, "tenant", "show", tenant)["tenant_id"] == tenant
    tls = ["--tls-dir", trio.banner["tls_dir"]] if trio.banner.get("tls_dir") else []
    done = invoke(trio.env, *tls, "--profile", "bo", "vault", "show", "fabrikam-cmk")
    refused = done.stderr
    assert done.exit_code == 1 and done.stdout == "", done.stdout
    assert "the token of profile bo has expired" in refused and "sign in again: cmk --profile bo" in refused
    assert f"login --endpoint {services['identity']} --tenant {tenant} --client-id {admin['client_id']}" in refused

    login_admin(trio, tenant, admin)
    assert json.loads(cmk(trio, "speech", "app", "show", app["name"])["configuration_json"]) == CONFIG
    assert cmk(trio, "speech", "encryption", "show", rid)["status"] == "HEALTHY"
    cmk(trio, "key", "purge", doomed["key_id"])
    assert cmk(trio, "key", "show", doomed["key_id"], ok=False)["error"]["reason"] == "KEY_NOT_FOUND"
