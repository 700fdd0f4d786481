"""The authorization matrix of the key vault's HTTPS door (rest_door: Azure Key Vault's data
plane), derived from the gRPC matrix's rules so that both doors provably agree.

Each door operation is one row of OPERATIONS: its route, HTTP method and path, what it aims at,
its JSON body, and the gRPC request the same operation is on the other door. Its expectations
are not written again: for the gRPC matrix's callers they are that RPC's row of
authz_matrix.EXPECTED, and for the callers only this matrix has (EXTRA_CALLERS: a token for
the wrong audience, a disabled principal, access policies with no permission, every permission
but the one needed, or exactly that one) they follow from PERMISSIONS, the permission each
RPC's access check asks for (keys.py and rotation.py, through key_checks.authorize).

A door answer is classified as the gRPC one is: "deny" is 401 (authentication), 403 for a
permission (Key Vault's Forbidden), or the 404 of an object the caller may not see (every
request aims at an object that exists); a 403 for a key's state (disabled, expired, operation
not allowed) is no denial. Beyond the verdict, each cell is compared with the gRPC call of the
same caller and operation: the same reason (innererror.code is the ErrorInfo reason) and the
HTTP status of that gRPC code (HTTP_STATUS). A new door operation (sign and verify, secrets,
backup and restore) is one row of OPERATIONS and, for a new RPC, one entry of PERMISSIONS.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from google.protobuf import field_mask_pb2
from google.protobuf.message import Message

from cmk_trio.keyvault.model import KeyPermission, SecretPermission
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2 as kvpb
from cmk_trio.proto.keyvault.v1 import resources_pb2 as kvres
from tests.security.authz_matrix import CALLERS, EXPECTED

KEY = "cmk.keyvault.v1.KeyService/"
SECRET = "cmk.keyvault.v1.SecretService/"

EXTRA_CALLERS = ("wrong-audience", "disabled", "no-policy", "all-but-needed", "only-needed")
"""Callers of this matrix only, all principals of the vault's tenant: the tenant administrator
with a token for the management audience; a principal whose policy grants every permission,
disabled after it signed in; one with an access policy granting nothing; one whose policy
grants every permission but the one the operation needs; one whose policy grants exactly that."""
DOOR_CALLERS = (*CALLERS, *EXTRA_CALLERS)

PERMISSIONS: dict[str, str] = {
    KEY + "CreateKey": "create",
    KEY + "ImportKey": "import",
    KEY + "GetKey": "get",
    KEY + "ListKeys": "list",
    KEY + "ListKeyVersions": "list",
    KEY + "UpdateKey": "update",
    KEY + "RotateKey": "rotate",
    KEY + "GetKeyRotationPolicy": "getrotationpolicy",
    KEY + "UpdateKeyRotationPolicy": "setrotationpolicy",
    KEY + "WrapKey": "wrapKey",
    KEY + "UnwrapKey": "unwrapKey",
    KEY + "Encrypt": "encrypt",
    KEY + "Decrypt": "decrypt",
    KEY + "DeleteKey": "delete",
    KEY + "GetDeletedKey": "get",
    KEY + "ListDeletedKeys": "list",
    KEY + "RecoverDeletedKey": "recover",
    KEY + "PurgeDeletedKey": "purge",
    KEY + "BackupKey": "backup",
    KEY + "RestoreKey": "restore",
    KEY + "Sign": "sign",
    KEY + "Verify": "verify",
    SECRET + "SetSecret": "secrets:set",
    SECRET + "GetSecret": "secrets:get",
    SECRET + "ListSecrets": "secrets:list",
    SECRET + "ListSecretVersions": "secrets:list",
    SECRET + "UpdateSecret": "secrets:set",
    SECRET + "DeleteSecret": "secrets:delete",
    SECRET + "GetDeletedSecret": "secrets:get",
    SECRET + "ListDeletedSecrets": "secrets:list",
    SECRET + "RecoverDeletedSecret": "secrets:recover",
    SECRET + "PurgeDeletedSecret": "secrets:purge",
    SECRET + "BackupSecret": "secrets:backup",
    SECRET + "RestoreSecret": "secrets:restore",
}
"""The access-policy permission each data-plane RPC asks for (keys.py, rotation.py, key_backup.py,
vault_secrets.py): a key permission, or "secrets:" and a secret permission."""
ALL_PERMISSIONS = (
    *(p.value for p in KeyPermission if p is not KeyPermission.ALL),
    *(f"secrets:{p.value}" for p in SecretPermission if p is not SecretPermission.ALL),
)
"""Every key and secret permission by its real name (but "all"), secret ones marked "secrets:"."""

STATE_REASONS = frozenset({"KEY_DISABLED", "KEY_EXPIRED", "KEY_NOT_YET_VALID", "KEY_OPERATION_NOT_ALLOWED",
                           "SECRET_DISABLED"})  # fmt: skip
"""403s about a key version's state, not the caller's rights (rest_door.http_error_of)."""
HTTP_STATUS: dict[str, frozenset[int]] = {
    "OK": frozenset({200, 204}),
    "UNAUTHENTICATED": frozenset({401}),
    "PERMISSION_DENIED": frozenset({403}),
    "NOT_FOUND": frozenset({404}),
    "INVALID_ARGUMENT": frozenset({400}),
    "ALREADY_EXISTS": frozenset({409}),
    "FAILED_PRECONDITION": frozenset({403, 409}),
    "RESOURCE_EXHAUSTED": frozenset({429}),
    "UNAVAILABLE": frozenset({503}),
}
"""Key Vault's status for each gRPC code (rest_door.http_error_of), as both doors must agree."""


class Aim(StrEnum):
    """What a request is aimed at; every target exists (or, for NEW, its vault does)."""

    KEY = "the CMK key (contoso-cmk/cmk, its version)"
    VAULT = "the vault contoso-cmk"
    SCRATCH = "a key of contoso-scratch"
    SCRATCH_VAULT = "the vault contoso-scratch"
    DELETED = "a deleted key of contoso-scratch"
    FRESH = "a key made for the cell (contoso-scratch)"
    FRESH_DELETED = "a key made and deleted for the cell (contoso-scratch)"
    NEW = "a name new in contoso-cmk"
    SECRET = "the matrix's secret (contoso-cmk/matrix-secret, its version)"
    DELETED_SECRET = "a deleted secret of contoso-scratch"
    FRESH_SECRET = "a secret set for the cell (contoso-scratch)"
    FRESH_DELETED_SECRET = "a secret set and deleted for the cell (contoso-scratch)"


@dataclass(frozen=True)
class Target:
    """An object a cell aims at, and the payloads its bodies carry."""

    vault: str
    name: str = ""
    version: str = ""
    import_jwk: str = ""
    wrapped: bytes = b""
    encrypted: bytes = b""
    backup: bytes = b""
    secret_backup: bytes = b""
    dns_suffix: str = "vault.azure.net"

    @property
    def parent(self) -> str:
        return f"vaults/{self.vault}"

    @property
    def versionless(self) -> str:
        return f"https://{self.vault}.{self.dns_suffix}/keys/{self.name}"

    @property
    def key_id(self) -> str:
        return f"{self.versionless}/{self.version}" if self.version else self.versionless

    @property
    def secret(self) -> str:
        """The secret's identifier, versionless."""
        return f"https://{self.vault}.{self.dns_suffix}/secrets/{self.name}"

    @property
    def secret_id(self) -> str:
        return f"{self.secret}/{self.version}" if self.version else self.secret

    @property
    def host(self) -> str:
        return f"{self.vault}.{self.dns_suffix}"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


@dataclass(frozen=True)
class DoorOperation:
    """One operation of the door: the route rest_door names it by, the gRPC RPC it becomes,
    the request on each door."""

    route: str
    rpc: str
    method: str
    path: str
    """Formatted with the target's name and version."""
    aim: Aim
    grpc: Callable[[Target], Message]
    body: Callable[[Target], Any] | None = None

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"

    def path_for(self, target: Target) -> str:
        return self.path.format(name=target.name, version=target.version)


def _alg(value: bytes) -> Callable[[Target], dict[str, str]]:
    return lambda t: {"alg": "RSA-OAEP-256", "value": b64url(value)}


OPERATIONS: tuple[DoorOperation, ...] = (
    DoorOperation("CreateKey", KEY + "CreateKey", "POST", "/keys/{name}/create", Aim.NEW,
                  lambda t: kvpb.CreateKeyRequest(parent=t.parent, key_name=t.name,
                                                  key=kvres.KeyVersion(key_size=2048)),
                  lambda t: {"kty": "RSA", "key_size": 2048}),
    DoorOperation("ImportKey", KEY + "ImportKey", "PUT", "/keys/{name}", Aim.NEW,
                  lambda t: kvpb.ImportKeyRequest(parent=t.parent, key_name=t.name, key_material=t.import_jwk),
                  lambda t: {"key": json.loads(t.import_jwk)}),
    DoorOperation("GetKey", KEY + "GetKey", "GET", "/keys/{name}", Aim.KEY,
                  lambda t: kvpb.GetKeyRequest(name=t.versionless)),
    DoorOperation("GetKeyVersion", KEY + "GetKey", "GET", "/keys/{name}/{version}", Aim.KEY,
                  lambda t: kvpb.GetKeyRequest(name=t.key_id)),
    DoorOperation("ListKeys", KEY + "ListKeys", "GET", "/keys", Aim.VAULT,
                  lambda t: kvpb.ListKeysRequest(parent=t.parent)),
    DoorOperation("ListKeyVersions", KEY + "ListKeyVersions", "GET", "/keys/{name}/versions", Aim.KEY,
                  lambda t: kvpb.ListKeyVersionsRequest(parent=t.versionless)),
    DoorOperation("UpdateKey", KEY + "UpdateKey", "PATCH", "/keys/{name}/", Aim.SCRATCH,
                  lambda t: kvpb.UpdateKeyRequest(name=t.versionless, attributes=kvres.KeyVersion(enabled=True),
                                                  update_mask=_mask("enabled")),
                  lambda t: {"attributes": {"enabled": True}}),
    DoorOperation("RotateKey", KEY + "RotateKey", "POST", "/keys/{name}/rotate", Aim.SCRATCH,
                  lambda t: kvpb.RotateKeyRequest(name=t.versionless)),
    DoorOperation("DeleteKey", KEY + "DeleteKey", "DELETE", "/keys/{name}", Aim.FRESH,
                  lambda t: kvpb.DeleteKeyRequest(name=t.versionless)),
    DoorOperation("ListDeletedKeys", KEY + "ListDeletedKeys", "GET", "/deletedkeys", Aim.SCRATCH_VAULT,
                  lambda t: kvpb.ListDeletedKeysRequest(parent=t.parent)),
    DoorOperation("GetDeletedKey", KEY + "GetDeletedKey", "GET", "/deletedkeys/{name}", Aim.DELETED,
                  lambda t: kvpb.GetDeletedKeyRequest(name=t.versionless)),
    DoorOperation("RecoverDeletedKey", KEY + "RecoverDeletedKey", "POST", "/deletedkeys/{name}/recover",
                  Aim.FRESH_DELETED, lambda t: kvpb.RecoverDeletedKeyRequest(name=t.versionless)),
    DoorOperation("PurgeDeletedKey", KEY + "PurgeDeletedKey", "DELETE", "/deletedkeys/{name}", Aim.FRESH_DELETED,
                  lambda t: kvpb.PurgeDeletedKeyRequest(name=t.versionless)),
    DoorOperation("KeyOperation", KEY + "WrapKey", "POST", "/keys/{name}/{version}/wrapkey", Aim.KEY,
                  lambda t: kvpb.WrapKeyRequest(name=t.key_id, algorithm=kvres.RSA_OAEP_256, plaintext=b"w" * 32),
                  _alg(b"w" * 32)),
    DoorOperation("KeyOperation", KEY + "UnwrapKey", "POST", "/keys/{name}/{version}/unwrapkey", Aim.KEY,
                  lambda t: kvpb.UnwrapKeyRequest(name=t.key_id, algorithm=kvres.RSA_OAEP_256, ciphertext=t.wrapped),
                  lambda t: {"alg": "RSA-OAEP-256", "value": b64url(t.wrapped)}),
    DoorOperation("KeyOperation", KEY + "Encrypt", "POST", "/keys/{name}/{version}/encrypt", Aim.KEY,
                  lambda t: kvpb.EncryptRequest(name=t.key_id, algorithm=kvres.RSA_OAEP_256, plaintext=b"e" * 32),
                  _alg(b"e" * 32)),
    DoorOperation("KeyOperation", KEY + "Decrypt", "POST", "/keys/{name}/{version}/decrypt", Aim.KEY,
                  lambda t: kvpb.DecryptRequest(name=t.key_id, algorithm=kvres.RSA_OAEP_256, ciphertext=t.encrypted),
                  lambda t: {"alg": "RSA-OAEP-256", "value": b64url(t.encrypted)}),
    DoorOperation("KeyOperation", KEY + "Sign", "POST", "/keys/{name}/{version}/sign", Aim.KEY,
                  lambda t: kvpb.SignRequest(name=t.key_id, algorithm=kvres.PS256, digest=b"s" * 32),
                  lambda t: {"alg": "PS256", "value": b64url(b"s" * 32)}),
    DoorOperation("KeyOperation", KEY + "Verify", "POST", "/keys/{name}/{version}/verify", Aim.KEY,
                  lambda t: kvpb.VerifyRequest(name=t.key_id, algorithm=kvres.RS256, digest=b"v" * 32,
                                               signature=b"not a signature"),
                  lambda t: {"alg": "RS256", "digest": b64url(b"v" * 32), "value": b64url(b"not a signature")}),
    DoorOperation("BackupKey", KEY + "BackupKey", "POST", "/keys/{name}/backup", Aim.KEY,
                  lambda t: kvpb.BackupKeyRequest(name=t.versionless)),
    # The backup of the key it names, which exists: an allowed caller gets 409, nothing changes.
    DoorOperation("RestoreKey", KEY + "RestoreKey", "POST", "/keys/restore", Aim.VAULT,
                  lambda t: kvpb.RestoreKeyRequest(parent=t.parent, backup=t.backup),
                  lambda t: {"value": b64url(t.backup)}),
    DoorOperation("GetKeyRotationPolicy", KEY + "GetKeyRotationPolicy", "GET", "/keys/{name}/rotationpolicy",
                  Aim.KEY, lambda t: kvpb.GetKeyRotationPolicyRequest(name=t.versionless)),
    DoorOperation("UpdateKeyRotationPolicy", KEY + "UpdateKeyRotationPolicy", "PUT", "/keys/{name}/rotationpolicy",
                  Aim.SCRATCH, lambda t: kvpb.UpdateKeyRotationPolicyRequest(name=t.versionless,
                                                                            policy=kvres.KeyRotationPolicy()),
                  lambda t: {"lifetimeActions": [], "attributes": {}}),
    DoorOperation("SetSecret", SECRET + "SetSecret", "PUT", "/secrets/{name}", Aim.NEW,
                  lambda t: kvpb.SetSecretRequest(parent=t.parent, secret_name=t.name, secret=kvres.Secret(value="v")),
                  lambda t: {"value": "v"}),
    DoorOperation("GetSecret", SECRET + "GetSecret", "GET", "/secrets/{name}", Aim.SECRET,
                  lambda t: kvpb.GetSecretRequest(name=t.secret)),
    DoorOperation("GetSecretVersion", SECRET + "GetSecret", "GET", "/secrets/{name}/{version}", Aim.SECRET,
                  lambda t: kvpb.GetSecretRequest(name=t.secret_id)),
    DoorOperation("ListSecrets", SECRET + "ListSecrets", "GET", "/secrets", Aim.VAULT,
                  lambda t: kvpb.ListSecretsRequest(parent=t.parent)),
    DoorOperation("ListSecretVersions", SECRET + "ListSecretVersions", "GET", "/secrets/{name}/versions",
                  Aim.SECRET, lambda t: kvpb.ListSecretVersionsRequest(parent=t.secret)),
    DoorOperation("UpdateSecret", SECRET + "UpdateSecret", "PATCH", "/secrets/{name}/", Aim.SECRET,
                  lambda t: kvpb.UpdateSecretRequest(name=t.secret, attributes=kvres.Secret(enabled=True),
                                                     update_mask=_mask("enabled")),
                  lambda t: {"attributes": {"enabled": True}}),
    DoorOperation("DeleteSecret", SECRET + "DeleteSecret", "DELETE", "/secrets/{name}", Aim.FRESH_SECRET,
                  lambda t: kvpb.DeleteSecretRequest(name=t.secret)),
    DoorOperation("ListDeletedSecrets", SECRET + "ListDeletedSecrets", "GET", "/deletedsecrets", Aim.SCRATCH_VAULT,
                  lambda t: kvpb.ListDeletedSecretsRequest(parent=t.parent)),
    DoorOperation("GetDeletedSecret", SECRET + "GetDeletedSecret", "GET", "/deletedsecrets/{name}",
                  Aim.DELETED_SECRET, lambda t: kvpb.GetDeletedSecretRequest(name=t.secret)),
    DoorOperation("RecoverDeletedSecret", SECRET + "RecoverDeletedSecret", "POST", "/deletedsecrets/{name}/recover",
                  Aim.FRESH_DELETED_SECRET, lambda t: kvpb.RecoverDeletedSecretRequest(name=t.secret)),
    DoorOperation("PurgeDeletedSecret", SECRET + "PurgeDeletedSecret", "DELETE", "/deletedsecrets/{name}",
                  Aim.FRESH_DELETED_SECRET, lambda t: kvpb.PurgeDeletedSecretRequest(name=t.secret)),
    DoorOperation("BackupSecret", SECRET + "BackupSecret", "POST", "/secrets/{name}/backup", Aim.SECRET,
                  lambda t: kvpb.BackupSecretRequest(name=t.secret)),
    # The backup of the secret it names, which exists: an allowed caller gets 409, nothing changes.
    DoorOperation("RestoreSecret", SECRET + "RestoreSecret", "POST", "/secrets/restore", Aim.VAULT,
                  lambda t: kvpb.RestoreSecretRequest(parent=t.parent, backup=t.secret_backup),
                  lambda t: {"value": b64url(t.secret_backup)}),
)  # fmt: skip
"""Every operation the door serves, one row each (a route serving several, as KeyOperation
does wrapkey, unwrapkey, encrypt and decrypt, has a row per operation)."""


def expected(operation: DoorOperation, caller: str) -> str:
    """The expectation of a cell, from the gRPC matrix's row for the gRPC matrix's callers and
    from the permission the RPC asks for for the others."""
    if caller in CALLERS:
        return EXPECTED[operation.rpc][caller]
    if caller in ("wrong-audience", "disabled"):
        return "deny:UNAUTHENTICATED"
    if caller == "only-needed":
        return "allow"
    return "deny:PERMISSION_DENIED"  # no-policy, all-but-needed: the vault's own tenant is told why


def permissions_for(caller: str, operation: DoorOperation) -> list[str]:
    """The permissions of the caller's access policy (the extra callers' only), secret ones
    marked "secrets:" (see split)."""
    needed = PERMISSIONS[operation.rpc]
    if caller == "only-needed":
        return [needed]
    if caller == "all-but-needed":
        return [p for p in ALL_PERMISSIONS if p != needed]
    if caller == "disabled":
        return list(ALL_PERMISSIONS)
    return []


def split(permissions: list[str]) -> tuple[list[str], list[str]]:
    """(key permissions, secret permissions) of a list of permissions_for."""
    keys = [p for p in permissions if not p.startswith("secrets:")]
    return keys, [p.removeprefix("secrets:") for p in permissions if p.startswith("secrets:")]


@dataclass(frozen=True)
class Answer:
    """One door's answer to one cell: the verdict, the status (an HTTP status, or a gRPC code's
    name) and the reason ("" when allowed without an error)."""

    verdict: str
    status: str
    reason: str = ""

    def cell(self) -> str:
        return f"{self.status} {self.reason}".strip()


def classify_http(status: int, reason: str) -> Answer:
    if status in (401, 404) or (status == 403 and reason not in STATE_REASONS):
        return Answer("deny", str(status), reason)
    return Answer("allow", str(status), reason)


def classify_grpc(code: str, reason: str) -> Answer:
    if code in ("UNAUTHENTICATED", "PERMISSION_DENIED", "NOT_FOUND"):
        return Answer("deny", code, reason)
    return Answer("allow", code, reason)


def meets(expectation: str, answer: Answer, *, grpc: bool) -> bool:
    """The answer is the expected verdict (and, where the expectation names a code, that code:
    on the door, its HTTP status)."""
    verdict, _, code = expectation.partition(":")
    if answer.verdict != verdict:
        return False
    if not code:
        return True
    return answer.status == code if grpc else int(answer.status) in HTTP_STATUS[code]


def agree(https: Answer, grpc: Answer) -> bool:
    """The two doors gave one answer: the same verdict and reason, the HTTP status of the code."""
    return (
        https.verdict == grpc.verdict
        and https.reason == grpc.reason
        and int(https.status) in HTTP_STATUS.get(grpc.status, frozenset())
    )


@dataclass(frozen=True)
class Cell:
    operation: DoorOperation
    caller: str
    https: Answer
    grpc: Answer

    @property
    def expectation(self) -> str:
        return expected(self.operation, self.caller)

    @property
    def problems(self) -> list[str]:
        found = []
        if not meets(self.expectation, self.https, grpc=False):
            found.append(f"HTTPS expected {self.expectation}, got {self.https.cell()}")
        if not meets(self.expectation, self.grpc, grpc=True):
            found.append(f"gRPC expected {self.expectation}, got {self.grpc.cell()}")
        if not agree(self.https, self.grpc):
            found.append(f"the doors differ: HTTPS {self.https.cell()}, gRPC {self.grpc.cell()}")
        return found

    @property
    def unexpected_grant(self) -> bool:
        return self.https.verdict == "allow" and self.expectation.startswith("deny")


def figures(cells: list[Cell]) -> dict[str, Any]:
    """What SECURITY.md says of a run: counts and every cell (as report.render_door_matrix reads them)."""
    every = [
        {"operation": c.operation.label, "caller": c.caller, "https": c.https.cell(), "https_verdict": c.https.verdict,
         "grpc": c.grpc.cell(), "expected": c.expectation, "problems": c.problems}
        for c in cells
    ]  # fmt: skip
    return {
        "callers": list(DOOR_CALLERS),
        "operations": [{"label": o.label, "rpc": o.rpc.rpartition("/")[2]} for o in OPERATIONS],
        "cells": every,
        "counts": {
            "cells": len(cells),
            "allowed": sum(c.https.verdict == "allow" for c in cells),
            "denied": sum(c.https.verdict == "deny" for c in cells),
            "unexpected_grants": sum(c.unexpected_grant for c in cells),
            "unexpected_denials": sum(c.https.verdict == "deny" and c.expectation == "allow" for c in cells),
            "doors_differ": sum(not agree(c.https, c.grpc) for c in cells),
            "mismatches": sum(bool(c.problems) for c in cells),
        },
    }


def render_markdown(found: Mapping[str, Any]) -> list[str]:
    """The door's matrix as SECURITY.md shows it: rows the operations, columns the callers."""
    counts = found["counts"]
    by_cell = {(c["operation"], c["caller"]): c for c in found["cells"]}
    lines = [
        "## Authorization matrix of the key vault's HTTPS door",
        "",
        f"Every operation of Azure Key Vault's data plane as the door serves it, by every caller of the gRPC "
        f"matrix and five more of the vault's tenant (a token for the management audience; a principal with every "
        f"permission, disabled after signing in; an access policy granting nothing, every permission but the one "
        f"needed, or exactly that one), each call also made on gRPC and compared: {counts['cells']:,} cells, "
        f"{counts['allowed']:,} allowed and {counts['denied']:,} denied; unexpected grants: "
        f"{counts['unexpected_grants']}, unexpected denials: {counts['unexpected_denials']}, cells where the doors "
        f"differ: {counts['doors_differ']}. Expectations are the gRPC matrix's rows and each RPC's permission "
        "(tests/security/door_matrix.py). A cell shows the HTTP status and the reason (innererror.code); **bold** "
        "cells differ from the expectation or from gRPC.",
        "",
        "| operation | " + " | ".join(found["callers"]) + " |",
        "|---" * (len(found["callers"]) + 1) + "|",
    ]
    for operation in found["operations"]:
        row = []
        for caller in found["callers"]:
            cell = by_cell.get((operation["label"], caller))
            if cell is None:
                row.append("-")
            elif cell["problems"]:
                row.append(f"**{cell['https']} ({'; '.join(cell['problems'])})**")
            else:
                row.append(cell["https"])
        lines.append(f"| `{operation['label']}` ({operation['rpc']}) | " + " | ".join(row) + " |")
    return [*lines, ""]
