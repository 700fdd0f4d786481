"""Azure Key Vault's data-plane JSON, to and from the key vault's own messages: what the door
(rest_door.py) reads from Microsoft's SDKs and writes back to them. Shapes as the service
publishes them (`specification/keyvault/data-plane`, read beside azure-keyvault-keys'
generated models): base64url without padding, times in Unix seconds, `kid`, `attributes`
with `recoveryLevel`, `key_ops` by JWK names. No rule is decided here: a request becomes the
gRPC API's request, and its answer comes back, so that both doors are one product.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from cmk_trio.keyvault.api.convert import OPERATIONS_PB
from cmk_trio.proto.keyvault.v1 import resources_pb2 as res
from cmk_trio.rpckit import json_input
from cmk_trio.rpckit.errors import invalid_field
from cmk_trio.rpckit.json_input import Json, JsonObject
from cmk_trio.rpckit.reasons import Reason

API_VERSIONS = frozenset({"7.0", "7.1", "7.2", "7.3", "7.4", "7.5", "7.6", "7.6-preview.2", "2025-07-01"})
"""The api-versions the door answers: those the current SDKs (2025-07-01) and the az CLI
(7.6-preview.2) send, and the published versions before them, whose key shapes are these."""
LATEST_API_VERSION = "2025-07-01"

ALGORITHMS: dict[str, res.EncryptionAlgorithm.ValueType] = {
    "RSA-OAEP-256": res.RSA_OAEP_256,
    "RSA-OAEP": res.RSA_OAEP,
    "RSA1_5": res.RSA1_5,
}
KEY_TYPES = {"RSA", "RSA-HSM"}  # (held in software either way; an HSM key is answered as RSA-HSM asked)
OPERATION_NAMES = {v: k for k, v in OPERATIONS_PB.items()}
RECOVERY_NAMES = {
    res.PURGEABLE: "Purgeable",
    res.RECOVERABLE_PURGEABLE: "Recoverable+Purgeable",
    res.RECOVERABLE: "Recoverable",
}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def from_b64url(field: str, text: Json) -> bytes:
    """Bytes the SDK sent base64url-encoded (with or without padding), or BadParameter."""
    if not isinstance(text, str):
        raise invalid_field(field, Reason.FIELD_INVALID, "must be a base64url string")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise invalid_field(field, Reason.FIELD_INVALID, "is not base64url") from None


def body_of(raw: bytes) -> JsonObject:
    """A request's JSON object (an empty body is an empty object)."""
    if not raw.strip():
        return {}
    try:
        body = json_input.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise invalid_field("body", Reason.REQUEST_MALFORMED, "is not JSON") from None
    if not isinstance(body, dict):
        raise invalid_field("body", Reason.REQUEST_MALFORMED, "must be a JSON object")
    return body


def _seconds(stamp: Timestamp) -> int:
    return int(stamp.seconds)


def _time_of(field: str, value: Json) -> Timestamp | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid_field(field, Reason.FIELD_INVALID, "must be a time in Unix seconds")
    try:
        at = datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise invalid_field(field, Reason.FIELD_INVALID, "is not a time") from None
    stamp = Timestamp()
    stamp.FromDatetime(at)
    return stamp


def attributes(v: res.KeyVersion) -> dict[str, object]:
    found: dict[str, object] = {
        "enabled": v.enabled,
        "created": _seconds(v.create_time),
        "updated": _seconds(v.update_time),
        "recoveryLevel": RECOVERY_NAMES.get(v.recovery_level, "Purgeable"),
        "exportable": False,
    }
    if v.HasField("not_before"):
        found["nbf"] = _seconds(v.not_before)
    if v.HasField("expires"):
        found["exp"] = _seconds(v.expires)
    if v.recoverable_days:
        found["recoverableDays"] = v.recoverable_days
    return found


def key_bundle(v: res.KeyVersion) -> dict[str, object]:
    """A KeyBundle: the public JWK with its kid, the attributes and the tags."""
    jwk = json.loads(v.public_jwk)
    key = {"kid": v.key_id, "kty": "RSA", "key_ops": [OPERATION_NAMES[o] for o in v.key_operations],
           "n": jwk["n"], "e": jwk["e"]}  # fmt: skip
    return {"key": key, "attributes": attributes(v), "tags": dict(v.tags)}


def versionless(kid: str) -> str:
    """https://{vault}.{suffix}/keys/{name} of https://{vault}.{suffix}/keys/{name}/{version}."""
    return kid.rsplit("/", 1)[0]


def key_item(v: res.KeyVersion, *, versioned: bool) -> dict[str, object]:
    """A KeyItem of a listing: the kid (of the key, or of this version), attributes and tags."""
    return {"kid": v.key_id if versioned else versionless(v.key_id), "attributes": attributes(v),
            "tags": dict(v.tags)}  # fmt: skip


def _deleted_fields(d: res.DeletedKey) -> dict[str, object]:
    return {"recoveryId": d.recovery_id, "deletedDate": _seconds(d.delete_time),
            "scheduledPurgeDate": _seconds(d.purge_time)}  # fmt: skip


def deleted_bundle(d: res.DeletedKey) -> dict[str, object]:
    return key_bundle(d.key) | _deleted_fields(d)


def deleted_item(d: res.DeletedKey) -> dict[str, object]:
    return key_item(d.key, versioned=False) | _deleted_fields(d)


def key_spec(body: Mapping[str, Json], *, creating: bool) -> tuple[res.KeyVersion, list[str]]:
    """The key a create, import or update asks for, and which of its fields were given (an
    update changes only those)."""
    spec, given = res.KeyVersion(), []
    if creating:
        kty = body.get("kty")
        if kty not in KEY_TYPES:
            raise invalid_field("kty", Reason.FIELD_INVALID, "this vault makes RSA keys (RSA or RSA-HSM)")
        size = body.get("key_size", 2048)
        if isinstance(size, bool) or not isinstance(size, int):
            raise invalid_field("key_size", Reason.FIELD_INVALID, "must be 2048, 3072 or 4096")
        spec.key_type, spec.key_size = res.RSA, size
    ops = body.get("key_ops")
    if ops is not None:
        if not isinstance(ops, list) or not all(isinstance(o, str) and o in OPERATIONS_PB for o in ops):
            raise invalid_field("key_ops", Reason.KEY_OPERATION_UNKNOWN, f"each one of {', '.join(OPERATIONS_PB)}")
        spec.key_operations.extend(OPERATIONS_PB[o] for o in ops)
        given.append("key_operations")
    attrs = body.get("attributes")
    if attrs is not None:
        if not isinstance(attrs, dict):
            raise invalid_field("attributes", Reason.FIELD_INVALID, "must be an object")
        if "enabled" in attrs:
            if not isinstance(attrs["enabled"], bool):
                raise invalid_field("attributes.enabled", Reason.FIELD_INVALID, "must be true or false")
            spec.enabled = attrs["enabled"]
            given.append("enabled")
        for name, field in (("nbf", "not_before"), ("exp", "expires")):
            if name in attrs:
                stamp = _time_of(f"attributes.{name}", attrs[name])
                if stamp is not None:
                    getattr(spec, field).CopyFrom(stamp)
                given.append(field)
    tags = body.get("tags")
    if tags is not None:
        if not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
            raise invalid_field("tags", Reason.FIELD_INVALID, "must map names to strings")
        spec.tags.update(tags)
        given.append("tags")
    return spec, given


def algorithm(body: Mapping[str, Json]) -> res.EncryptionAlgorithm.ValueType:
    name = body.get("alg")
    if not isinstance(name, str) or name not in ALGORITHMS:
        raise invalid_field("alg", Reason.ALGORITHM_UNKNOWN, "RSA-OAEP-256, RSA-OAEP or RSA1_5")
    return ALGORITHMS[name]
