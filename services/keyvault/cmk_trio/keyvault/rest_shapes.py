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

from cmk_trio.keyvault.api.convert import CURVES_PB, OPERATIONS_PB
from cmk_trio.proto.keyvault.v1 import resources_pb2 as res
from cmk_trio.rpckit import json_input
from cmk_trio.rpckit.errors import invalid_field
from cmk_trio.rpckit.json_input import Json, JsonObject
from cmk_trio.rpckit.reasons import Reason

API_VERSIONS = frozenset({"7.0", "7.1", "7.2", "7.3", "7.4", "7.5", "7.6", "7.6-preview.2", "2025-07-01",
                          "2026-04-01"})  # fmt: skip
"""The api-versions the door answers: those the current SDKs send (azure-keyvault-keys 4.11:
2025-07-01; azure-keyvault-secrets 4.12: 2026-04-01) and the az CLI (7.6-preview.2), and the
published versions before them, whose shapes of keys and secrets are these."""
LATEST_API_VERSION = "2026-04-01"

ALGORITHMS: dict[str, res.EncryptionAlgorithm.ValueType] = {
    "RSA-OAEP-256": res.RSA_OAEP_256,
    "RSA-OAEP": res.RSA_OAEP,
    "RSA1_5": res.RSA1_5,
}
SIGNATURES: dict[str, res.SignatureAlgorithm.ValueType] = {
    name: getattr(res, name)
    for name in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
}
RSA_TYPES = {"RSA", "RSA-HSM"}
EC_TYPES = {"EC", "EC-HSM"}
"""An HSM kind is accepted and held in software like the others, and answered as what it is:
kty RSA or EC, as a standard vault's keys are (this vault has no HSM to claim)."""
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


def attributes(v: res.KeyVersion | res.Secret) -> dict[str, object]:
    found: dict[str, object] = {
        "enabled": v.enabled,
        "created": _seconds(v.create_time),
        "updated": _seconds(v.update_time),
        "recoveryLevel": RECOVERY_NAMES.get(v.recovery_level, "Purgeable"),
    }
    if isinstance(v, res.KeyVersion):
        found["exportable"] = False
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
    key = {"kid": v.key_id, "kty": jwk["kty"], "key_ops": [OPERATION_NAMES[o] for o in v.key_operations]}
    key |= {name: jwk[name] for name in ("n", "e", "crv", "x", "y") if name in jwk}
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
        if not isinstance(kty, str):  # (a list or an object is not looked up in a set: TypeError, a 500)
            raise invalid_field("kty", Reason.FIELD_INVALID, "must be RSA, RSA-HSM, EC or EC-HSM")
        if kty in EC_TYPES:
            crv = body.get("crv", "P-256")
            if not isinstance(crv, str) or crv not in CURVES_PB:
                raise invalid_field("crv", Reason.KEY_CURVE_INVALID, f"one of {', '.join(CURVES_PB)}")
            spec.key_type, spec.curve = res.EC, CURVES_PB[crv]
        elif kty in RSA_TYPES:
            size = body.get("key_size", 2048)
            if isinstance(size, bool) or not isinstance(size, int):
                raise invalid_field("key_size", Reason.FIELD_INVALID, "must be 2048, 3072 or 4096")
            if body.get("public_exponent", 65537) != 65537:  # (rather than make another silently)
                raise invalid_field("public_exponent", Reason.FIELD_INVALID, "this vault makes RSA keys with 65537")
            spec.key_type, spec.key_size = res.RSA, size
        else:
            raise invalid_field(
                "kty", Reason.FIELD_INVALID, "this vault makes RSA and EC keys (RSA, RSA-HSM, EC, EC-HSM)"
            )
    ops = body.get("key_ops")
    if ops is not None:
        if not isinstance(ops, list) or not all(isinstance(o, str) and o in OPERATIONS_PB for o in ops):
            raise invalid_field("key_ops", Reason.KEY_OPERATION_UNKNOWN, f"each one of {', '.join(OPERATIONS_PB)}")
        spec.key_operations.extend(OPERATIONS_PB[o] for o in ops)
        given.append("key_operations")
    given += _attributes_into(spec, body.get("attributes"))
    tags = body.get("tags")
    if tags is not None:
        spec.tags.update(_tags(tags))
        given.append("tags")
    return spec, given


def _attributes_into(spec: res.KeyVersion | res.Secret, attrs: Json) -> list[str]:
    """`attributes` (enabled, nbf, exp) into a key's or a secret's message; the fields given."""
    given: list[str] = []
    if attrs is None:
        return given
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
    return given


def _tags(tags: Json) -> dict[str, str]:
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise invalid_field("tags", Reason.FIELD_INVALID, "must map names to strings")
    return {k: v for k, v in tags.items() if isinstance(v, str)}


def signature_algorithm(body: Mapping[str, Json]) -> res.SignatureAlgorithm.ValueType:
    name = body.get("alg")
    if not isinstance(name, str) or name not in SIGNATURES:
        raise invalid_field("alg", Reason.ALGORITHM_UNKNOWN, f"one of {', '.join(SIGNATURES)}")
    return SIGNATURES[name]


def algorithm(body: Mapping[str, Json]) -> res.EncryptionAlgorithm.ValueType:
    name = body.get("alg")
    if not isinstance(name, str) or name not in ALGORITHMS:
        raise invalid_field("alg", Reason.ALGORITHM_UNKNOWN, "RSA-OAEP-256, RSA-OAEP or RSA1_5")
    return ALGORITHMS[name]


# --- secrets --------------------------------------------------------------------------------


def secret_bundle(s: res.Secret, *, with_value: bool) -> dict[str, object]:
    """A SecretBundle: id, attributes, tags, contentType, and the value where the call reads it."""
    bundle: dict[str, object] = {"id": s.secret_id, "attributes": attributes(s), "tags": dict(s.tags)}
    if s.content_type:
        bundle["contentType"] = s.content_type
    if with_value:
        bundle["value"] = s.value
    return bundle


def secret_item(s: res.Secret, *, versioned: bool) -> dict[str, object]:
    """A SecretItem of a listing (no value)."""
    item = secret_bundle(s, with_value=False)
    if not versioned:
        item["id"] = versionless(s.secret_id)
    return item


def _deleted_secret_fields(d: res.DeletedSecret) -> dict[str, object]:
    return {"recoveryId": d.recovery_id, "deletedDate": _seconds(d.delete_time),
            "scheduledPurgeDate": _seconds(d.purge_time)}  # fmt: skip


def deleted_secret_bundle(d: res.DeletedSecret) -> dict[str, object]:
    return secret_bundle(d.secret, with_value=False) | _deleted_secret_fields(d)


def deleted_secret_item(d: res.DeletedSecret) -> dict[str, object]:
    return secret_item(d.secret, versioned=False) | _deleted_secret_fields(d)


def secret_spec(body: Mapping[str, Json], *, setting: bool) -> tuple[res.Secret, list[str]]:
    """The secret a set or an update asks for, and which of its fields were given."""
    spec, given = res.Secret(), []
    if setting:
        value = body.get("value")
        if not isinstance(value, str):
            raise invalid_field("value", Reason.FIELD_INVALID if value is not None else Reason.FIELD_REQUIRED,
                                "a secret's value is a string")  # fmt: skip
        spec.value = value
    content_type = body.get("contentType")
    if content_type is not None:
        if not isinstance(content_type, str):
            raise invalid_field("contentType", Reason.FIELD_INVALID, "must be a string")
        spec.content_type = content_type
        given.append("content_type")
    given += _attributes_into(spec, body.get("attributes"))
    tags = body.get("tags")
    if tags is not None:
        spec.tags.update(_tags(tags))
        given.append("tags")
    return spec, given


# --- rotation policies ----------------------------------------------------------------------

ROTATION_ACTIONS = {"rotate": res.ROTATE, "notify": res.NOTIFY}


def rotation_policy(p: res.KeyRotationPolicy, policy_id: str) -> dict[str, object]:
    """A KeyRotationPolicy as Key Vault writes it."""
    actions = []
    for a in p.lifetime_actions:
        trigger = {"timeAfterCreate": a.time_after_create} if a.time_after_create else {}
        if a.time_before_expiry:
            trigger["timeBeforeExpiry"] = a.time_before_expiry
        actions.append({"trigger": trigger, "action": {"type": "Rotate" if a.action == res.ROTATE else "Notify"}})
    policy_attributes: dict[str, object] = {"expiryTime": p.expiry_time} if p.expiry_time else {}
    if p.HasField("update_time"):
        policy_attributes |= {"created": _seconds(p.update_time), "updated": _seconds(p.update_time)}
    return {"id": policy_id, "lifetimeActions": actions, "attributes": policy_attributes}


def rotation_policy_spec(body: Mapping[str, Json]) -> res.KeyRotationPolicy:
    """The policy a PUT .../rotationpolicy sets (the rules are the engine's: rotation.py)."""
    policy = res.KeyRotationPolicy()
    actions = body.get("lifetimeActions", [])
    if not isinstance(actions, list):
        raise invalid_field("lifetimeActions", Reason.FIELD_INVALID, "must be a list")
    for i, entry in enumerate(actions):
        field = f"lifetimeActions[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("trigger"), dict):
            raise invalid_field(field, Reason.FIELD_INVALID, "must be an object with a trigger and an action")
        action, trigger = entry.get("action"), entry["trigger"]
        kind = action.get("type") if isinstance(action, dict) else None
        if not isinstance(kind, str) or kind.lower() not in ROTATION_ACTIONS:
            raise invalid_field(f"{field}.action.type", Reason.ENUM_UNKNOWN, "Rotate or Notify")
        after, before = trigger.get("timeAfterCreate", ""), trigger.get("timeBeforeExpiry", "")
        if not isinstance(after, str) or not isinstance(before, str):
            raise invalid_field(f"{field}.trigger", Reason.FIELD_INVALID, "durations are ISO 8601 strings")
        policy.lifetime_actions.append(
            res.LifetimeAction(action=ROTATION_ACTIONS[kind.lower()], time_after_create=after,
                               time_before_expiry=before)
        )  # fmt: skip
    attrs = body.get("attributes") or {}
    if not isinstance(attrs, dict):
        raise invalid_field("attributes", Reason.FIELD_INVALID, "must be an object")
    expiry = attrs.get("expiryTime", "")
    if not isinstance(expiry, str):
        raise invalid_field("attributes.expiryTime", Reason.FIELD_INVALID, "an ISO 8601 duration")
    policy.expiry_time = expiry
    return policy
