"""Inputs for fuzzing Azure Resource Manager's door (tests/security/test_arm_fuzz.py runs them),
written as raw bytes by tests/security/door_fuzz.py's `request`:

    json field   the body of each ARM operation with one field made hostile, at the top level,
                 under `properties` or one level deeper (every JSON type, huge, deep, odd numbers)
    json body    bodies that are no JSON object, huge, deep, or beyond the door's limit
    api-version  missing, odd, repeated, another provider's
    path         odd names in each segment (.., %2f, NUL, long, Unicode), odd providers and types
    method       odd methods on each path
    headers      header floods, odd Authorization, odd request and correlation ids, content types
    framing      chunked and Content-Length oddities, HTTP/1.0, bare newlines

Every choice comes from one random.Random (CMK_FUZZ_SEED).
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.security.door_fuzz import (
    JSON_TYPES,
    ODD_JSON_VALUES,
    ODD_METHODS,
    ODD_NAMES,
    ODD_VERSIONS,
    RAW_NUMBERS,
    Probe,
    request,
)

RG, SUBS, KV, CS, AUTH = "2025-04-01", "2022-12-01", "2026-02-01", "2025-09-01", "2022-04-01"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"


@dataclass
class ArmInputs:
    """What the inputs aim at: a subscription with a group, a vault and a speech account that the
    token (its tenant's administrator, Owner of the subscription) may change."""

    subscription: str
    tenant: str
    object_id: str
    group: str
    vault: str
    account: str
    token: str
    host: str
    rng: random.Random = field(default_factory=random.Random)

    def _n(self) -> str:
        return f"{self.rng.randrange(10**6)}"

    def operations(self) -> list[tuple[str, str, dict[str, Any] | None]]:
        """(method, path with its api-version, valid body) of each operation. Those that make
        something make it under a fresh name; deletes aim only at what is not there."""
        s, g, v, a = self.subscription, self.group, self.vault, self.account
        sub, grp = f"/subscriptions/{s}", f"/subscriptions/{s}/resourceGroups/{g}"
        vaults = f"{grp}/providers/Microsoft.KeyVault/vaults"
        accounts = f"{grp}/providers/Microsoft.CognitiveServices/accounts"
        assignments = f"{grp}/providers/Microsoft.Authorization/roleAssignments"
        policy = {"tenantId": self.tenant, "objectId": self.object_id, "permissions": {"keys": ["get", "wrapKey"]}}
        vault_body = {"location": "westeurope", "tags": {"a": "b"}, "properties": {
            "tenantId": self.tenant, "sku": {"family": "A", "name": "standard"}, "accessPolicies": [policy],
            "enableSoftDelete": True, "softDeleteRetentionInDays": 7, "enablePurgeProtection": True}}  # fmt: skip
        account_body = {"kind": "SpeechServices", "sku": {"name": "S0"}, "location": "westeurope",
                        "identity": {"type": "SystemAssigned"}, "properties": {}}  # fmt: skip
        encryption = {"properties": {"encryption": {"keySource": "Microsoft.KeyVault", "keyVaultProperties": {
            "keyVaultUri": f"https://{v}.vault.azure.net/", "keyName": "cmk", "keyVersion": ""}}}}  # fmt: skip
        assignment = {"properties": {"roleDefinitionId": f"{sub}/providers/Microsoft.Authorization/roleDefinitions/"
                                     f"{READER}", "principalId": self.object_id}}  # fmt: skip
        return [
            ("GET", f"/subscriptions?api-version={SUBS}", None), ("GET", f"{sub}?api-version={SUBS}", None),
            ("GET", f"/tenants?api-version={SUBS}", None), ("GET", f"{sub}/providers?api-version={RG}", None),
            ("GET", f"{sub}/resourcegroups?api-version={RG}", None), ("GET", f"{grp}?api-version={RG}", None),
            ("HEAD", f"{grp}?api-version={RG}", None),
            ("PUT", f"{sub}/resourcegroups/fz-{self._n()}?api-version={RG}", {"location": "westeurope", "tags": {}}),
            ("PATCH", f"{grp}?api-version={RG}", {"tags": {"fuzzed": "yes"}}),
            ("DELETE", f"{sub}/resourcegroups/none-{self._n()}?api-version={RG}", None),
            ("GET", f"{sub}/resources?api-version={RG}&$filter=resourceType eq 'Microsoft.KeyVault/vaults'", None),
            ("GET", f"{vaults}?api-version={KV}", None), ("GET", f"{vaults}/{v}?api-version={KV}", None),
            ("PUT", f"{vaults}/fz{self._n()}?api-version={KV}", vault_body),
            ("PATCH", f"{vaults}/{v}?api-version={KV}", {"tags": {"fuzzed": "yes"}, "properties": {}}),
            ("PUT", f"{vaults}/{v}/accessPolicies/add?api-version={KV}", {"properties": {"accessPolicies": [policy]}}),
            ("PUT", f"{vaults}/{v}/accessPolicies/replace?api-version={KV}",
             {"properties": {"accessPolicies": [policy]}}),
            ("POST", f"{sub}/providers/Microsoft.KeyVault/checkNameAvailability?api-version={KV}",
             {"name": f"fz{self._n()}", "type": "Microsoft.KeyVault/vaults"}),
            ("GET", f"{sub}/providers/Microsoft.KeyVault/deletedVaults?api-version={KV}", None),
            ("DELETE", f"{vaults}/none{self._n()}?api-version={KV}", None),
            ("GET", f"{accounts}?api-version={CS}", None), ("GET", f"{accounts}/{a}?api-version={CS}", None),
            ("PUT", f"{accounts}/fz{self._n()}?api-version={CS}", account_body),
            ("PATCH", f"{accounts}/{a}?api-version={CS}", encryption),
            ("DELETE", f"{accounts}/none{self._n()}?api-version={CS}", None),
            ("GET", f"{sub}/providers/Microsoft.Authorization/roleDefinitions?api-version={AUTH}", None),
            ("GET", f"{grp}/providers/Microsoft.Authorization/roleAssignments?api-version={AUTH}", None),
            ("PUT", f"{assignments}/{uuid.UUID(int=self.rng.getrandbits(128))}?api-version={AUTH}", assignment),
        ]  # fmt: skip

    def headers(self, *, token: bool = True) -> list[tuple[str, str]]:
        found = [("Host", self.host), ("Content-Type", "application/json")]
        if token:
            found.append(("Authorization", f"Bearer {self.token}"))
        return found

    def sweep(self) -> list[Probe]:
        """Every field of every body, at the top level and under `properties`, once with a value of
        each JSON type: what a type check forgot shows in every run."""
        probes = []
        for method, path, body in self.operations():
            if body is None:
                continue
            found = body.get("properties")
            inner: dict[str, Any] = found if isinstance(found, dict) else {}
            for name in sorted({*body, "properties", "tags", "location"}):
                for value in JSON_TYPES:
                    sent = json.dumps(body | {name: value}).encode()
                    probes.append(Probe("type sweep", request(method, path, self.headers(), sent), True, name))
            for name in sorted(inner):
                for value in JSON_TYPES:
                    sent = json.dumps(body | {"properties": inner | {name: value}}).encode()
                    probes.append(Probe("type sweep", request(method, path, self.headers(), sent), True,
                                        f"properties.{name}"))  # fmt: skip
        return probes

    def probe(self) -> Probe:
        kinds: list[tuple[str, Callable[[], Probe]]] = [
            ("json field", self._json_field), ("json body", self._json_body), ("api-version", self._api_version),
            ("path", self._path), ("method", self._method), ("headers", self._headers), ("framing", self._framing),
        ]  # fmt: skip
        kind, make = self.rng.choices(kinds, [6, 3, 2, 3, 1, 2, 1])[0]
        made = make()
        made.kind = kind
        return made

    def _writes(self) -> tuple[str, str, dict[str, Any]]:
        return self.rng.choice([(m, p, b) for m, p, b in self.operations() if b is not None])

    def _json_field(self) -> Probe:
        rng = self.rng
        method, path, body = self._writes()
        body = json.loads(json.dumps(body))
        where = body
        if rng.random() < 0.5 and isinstance(body.get("properties"), dict):
            where = body["properties"]
            nested = [k for k, val in where.items() if isinstance(val, dict | list) and val]
            if nested and rng.random() < 0.4:
                inner = where[rng.choice(nested)]
                where = inner[0] if isinstance(inner, list) and isinstance(inner[0], dict) else inner
        if not isinstance(where, dict):
            where = body
        name = rng.choice([*where, "tags", "location", "kind", "sku", "identity", "encryption", "keyVaultProperties"])
        if rng.random() < 0.25:
            where[name] = "@@"
            raw = json.dumps(body).replace('"@@"', rng.choice(RAW_NUMBERS)).encode()
        else:
            where[name] = rng.choice(ODD_JSON_VALUES)
            raw = json.dumps(body).encode()
        return Probe("", request(method, path, self.headers(), raw), True, name)

    def _json_body(self) -> Probe:
        rng = self.rng
        method, path, _ = self._writes()
        bodies = [
            b"", b"{", b"}", b"[]", b"null", b"1", b'"x"', b"{not json", b'{"location": "a", "location": "b"}',
            b"\xff\xfe{}", b"\xef\xbb\xbf{}", b'{"location": "\xff"}', b"[" * 5000 + b"]" * 5000,
            b'{"a":' * 3000 + b"1" + b"}" * 3000, b'{"tags": {"' + b"k" * 60_000 + b'": "v"}}',
            b"{" + b'"k": 1,' * 20_000 + b'"z": 2}', b"\x00" * 100, b'{"location": NaN, "tags": Infinity}',
        ]  # fmt: skip
        body = rng.choice(bodies)
        if rng.random() < 0.05:
            body = b"x" * rng.choice((262_145, 1_000_000, 4_000_000))  # beyond the door's limit
        return Probe("", request(method, path, self.headers(), body), True)

    def _api_version(self) -> Probe:
        rng = self.rng
        method, path, body = rng.choice(self.operations())
        base, _, query = path.partition("?")
        others = [p for p in query.split("&") if not p.startswith("api-version=")]
        version = rng.choice([*ODD_VERSIONS, RG, SUBS, KV, CS, AUTH, "2019-05-01", "2015-11-01"])
        asked = rng.choice([[], [f"api-version={version}"], [f"api-version={version}", f"api-version={RG}"],
                            [f"API-VERSION={version}"]])  # fmt: skip
        target = base + ("?" + "&".join([*asked, *others]) if asked or others else "")
        raw = json.dumps(body).encode() if body is not None else None
        return Probe("", request(method, target, self.headers(), raw), method != "GET")

    def _path(self) -> Probe:
        rng = self.rng
        method, path, body = rng.choice(self.operations())
        base, _, query = path.partition("?")
        segments = base.split("/")
        choice = rng.randrange(4)
        if choice == 0 and len(segments) > 1:
            segments[rng.randrange(1, len(segments))] = rng.choice(ODD_NAMES)
        elif choice == 1:
            segments.insert(rng.randrange(1, len(segments) + 1), rng.choice(["..", ".", "", "%2f", "x"]))
        elif choice == 2:
            segments += rng.choice([["providers"], ["providers", "Microsoft.Compute", "vm"], ["x"] * 40,
                                    ["accessPolicies", rng.choice(["ADD", "delete", "%00"])]])  # fmt: skip
        else:
            segments = ["", rng.choice(["subscriptions", "tenants", "providers", "metadata", "x"]),
                        rng.choice([self.subscription.upper(), str(uuid.uuid4()), *ODD_NAMES])]  # fmt: skip
        raw = json.dumps(body).encode() if body is not None else None
        return Probe("", request(method, "/".join(segments) + "?" + query, self.headers(), raw), True)

    def _method(self) -> Probe:
        rng = self.rng
        _, path, body = rng.choice(self.operations())
        raw = json.dumps(body).encode() if body is not None and rng.random() < 0.5 else None
        return Probe("", request(rng.choice(ODD_METHODS), path, self.headers(), raw), True)

    def _headers(self) -> Probe:
        rng = self.rng
        method, path, body = rng.choice(self.operations())
        headers = self.headers(token=False)
        choice = rng.randrange(4)
        if choice == 0:
            headers += [(f"X-Flood-{i}", "v" * rng.randrange(1, 100)) for i in range(rng.choice((100, 500)))]
            headers.append(("Authorization", f"Bearer {self.token}"))
        elif choice == 1:
            headers.append(("Authorization", rng.choice([
                "Bearer", "Bearer ", "Basic Zm9vOmJhcg==", "bearer " + self.token, "Bearer " + "a" * 9000,
                "Bearer x.y.z", "Bearer " + self.token + "x", "PoP " + self.token, "Bearer \x00",
            ])))  # fmt: skip
        elif choice == 2:
            headers += [("Authorization", f"Bearer {self.token}"),
                        ("x-ms-correlation-request-id", rng.choice(["\r", "é", "a" * 9000, "../..", ""])),
                        ("x-ms-client-request-id", "r" * rng.choice((10, 100, 9000)))]  # fmt: skip
        else:
            headers = [h for h in headers if h[0] != "Content-Type"]
            kinds = ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=utf-16", ""]
            headers += [("Authorization", f"Bearer {self.token}"), ("Content-Type", rng.choice(kinds))]
        raw = json.dumps(body).encode() if body is not None else None
        return Probe("", request(method, path, headers, raw), method != "GET")

    def _framing(self) -> Probe:
        method, path, body = self._writes()
        raw = json.dumps(body).encode()
        base = self.headers()
        choices = [
            request(method, path, [*base, ("Transfer-Encoding", "chunked")], b"5\r\n{\"loc\r\n0\r\n\r\n"),
            request(method, path, [*base, ("Transfer-Encoding", "chunked")], b"zz\r\n{}\r\n0\r\n\r\n"),
            request(method, path, [*base, ("Transfer-Encoding", "chunked"), ("Content-Length", "3")], raw),
            request(method, path, [*base, ("Content-Length", "3"), ("Content-Length", "40")], raw),
            request(method, path, [*base, ("Content-Length", "-1")], raw),
            request(method, path, [*base, ("Expect", "100-continue")], raw),
            request(method, path, [*base, ("Content-Encoding", "gzip")], raw),
            request("GET", path, base).replace(b"HTTP/1.1", b"HTTP/1.0"),
            request("GET", path, base).replace(b"\r\n", b"\n"),
        ]  # fmt: skip
        return Probe("", self.rng.choice(choices), True)
