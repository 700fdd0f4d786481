"""A structure-aware fuzzer for every RPC of the trio (the engine; tests/security/test_fuzz.py runs it).

What it does
    Every method of every service is enumerated from the generated descriptors (identity's
    IdentityService and TokenService, the key vault's VaultService, KeyService and AuditService,
    speech's SpeechResourceService and ApplicationService, and the DevService each of the three
    serves). For each method it builds requests from the method's input type, field by field:
    structurally valid protobuf, but hostile by the field's type (strings empty, 10k-100k long,
    odd Unicode, NUL bytes, path traversal, names of other tenants and other kinds, JSON nested
    1,500 deep, huge numbers; integers at 0, -1 and the limits of their type, unknown enum
    numbers; bytes empty, random or 1 MiB; repeated fields with 0, 1 or 10,000 entries; nested
    messages empty or filled recursively; Timestamps outside years 1-9999 or with negative nanos;
    FieldMasks with unknown paths), mixed with plausible values (real names harvested from the
    services' own answers) so that inputs get past the first check; and now and then it mutates
    the serialized bytes of a request the service accepted (bit flips, truncation, unknown fields,
    invalid UTF-8 in a string field).

    Each input goes through a raw channel (bytes in, bytes out) with a valid token of a strong
    caller: the world tenant's administrator (Owner of its subscription), and the platform operator
    for operator-only methods (and for one input in five of the others, whose operator paths differ).

What it checks, per input
    - the status is never UNKNOWN, INTERNAL or DATA_LOSS (nor UNIMPLEMENTED);
    - every non-OK status carries a google.rpc.ErrorInfo with a reason;
    - no call hangs: a unary call has a deadline of CALL_DEADLINE seconds and DEADLINE_EXCEEDED is a
      failure; a server stream is read for at most STREAM_MESSAGES messages or STREAM_CUTOFF
      seconds and then cancelled by us (that is no failure);
    - the service still answers a health check afterwards;
    - nothing is stored by a refused call that could write (every method but Get/List/Check/...):
      the content of each table of the databases it may write (WATCHED_DATABASES), audit logs and
      event logs aside, is the same before and after;
    - the server logged no error (a traceback) while handling it.

    Figures (Figures.as_json, written to CMK_FUZZ_REPORT): inputs per service, a count of
    (status code, ErrorInfo reason) overall, per service and per method, every failure with the
    method, the input (shortened, and as base64 when small), the status and the server's log lines,
    failures grouped by where they arise, the methods no input was accepted by, refusals whose
    ErrorInfo "field" names no field of the request, and requests by the administrator that
    named the other tenant's things and were accepted (for a person to judge).

Reproducibility
    All choices come from one random.Random seeded from CMK_FUZZ_SEED (default DEFAULT_SEED). The
    values harvested from the services hold server-made ids, so two runs choose the same shapes at
    the same places, with that run's ids. A failure's report has the request's bytes (base64) when
    they are small.

State
    Inputs change state (they create tenants, vaults, keys, applications, ...): the world is per
    test. To keep coverage, the methods that take things away or change access (Delete*, Purge*,
    Disable*, Remove*, Reject*, Transfer*, Move*, Update*, SetAccessPolicy, ReplaceAccessPolicies, RotateSigningKey,
    AdvanceClock) run in a second phase, after every service's first phase, and in the order
    speech, key vault, identity: each service's dependencies are intact while it is fuzzed, and
    AdvanceClock comes last in each service.

Learning
    Before the run (and before each service's second phase, for its methods) every method is
    sent plausible requests until some are accepted; accepted requests form the method's corpus.
    Most inputs then take an accepted request and make one to three of its fields hostile, so
    that the hostile value gets past the checks of the other fields. A refusal's ErrorInfo says
    which field it refused ("field") or which values it refused (other metadata): plausible
    values of that form are not offered for that field of that method again.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import random
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
from google.protobuf import descriptor, field_mask_pb2, message_factory, timestamp_pb2
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2

from cmk_trio.proto.common.v1 import dev_service_pb2
from cmk_trio.proto.identity.v1 import identity_service_pb2
from cmk_trio.proto.keyvault.v1 import keyvault_service_pb2
from cmk_trio.proto.speech.v1 import speech_service_pb2
from cmk_trio.rpckit import audiences
from cmk_trio.rpckit.status import error_info_of
from tests import raw_database

FD = descriptor.FieldDescriptor
TokenSource = Callable[[str], Awaitable[str]]

DEFAULT_SEED = 20260412
DEFAULT_INPUTS = 300
CALL_DEADLINE = 5.0
"""Seconds a unary call may take; DEADLINE_EXCEEDED is a failure (a hang)."""
STREAM_CUTOFF = 1.0
"""Seconds we read a server stream before cancelling it ourselves (no failure)."""
STREAM_MESSAGES = 3
HEALTH_DEADLINE = 2.0
MAX_BODY = 7 * 1024 * 1024
"""Requests stay under the servers' transport limit (8 MiB), beyond which gRPC itself refuses
with RESOURCE_EXHAUSTED and no ErrorInfo (documented); our own 4 MiB limit is in reach."""
LONG_STRING = (10_000, 100_000)
REPEATED_MANY = 10_000
MiB = 1024 * 1024
MAX_REPORTED_FAILURES = 500
"""Failures kept in full in the report (failure_groups counts them all)."""

BAD_CODES = frozenset(
    {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DATA_LOSS, grpc.StatusCode.UNIMPLEMENTED}
)
READ_PREFIXES = ("Get", "List", "Check", "Watch", "Stream", "Verify", "Issue")
"""Methods that store nothing even when they succeed: no database comparison around them."""
PHASE_TWO_PREFIXES = ("Delete", "Purge", "Disable", "Remove", "Reject", "Transfer", "Move", "Update", "Revoke")
PHASE_TWO_METHODS = frozenset({"SetAccessPolicy", "ReplaceAccessPolicies", "RotateSigningKey", "AdvanceClock"})
FREE_TEXT = frozenset({"display_name", "note", "configuration_json", "description"})
"""Fields whose text names nothing (a note may mention another tenant's subscription)."""
WATCHED_DATABASES = {"identity": ("identity",), "keyvault": ("keyvault",), "speech": ("identity", "keyvault", "speech")}
"""The databases compared around a refused call to each service: its own, and for speech (which
calls the other two while it works) all three. Not identity's and the key vault's calls' effect
on speech: speech follows their events and writes later (a transferred subscription's tenant), so
a change there is no sign of the refused call."""
LOG_TABLES = frozenset({"events", "audit_log", "audit_checkpoints", "sqlite_sequence"})

OPERATOR_ONLY = frozenset(
    {
        "cmk.identity.v1.IdentityService/CreateTenant",
        "cmk.identity.v1.IdentityService/CreateSubscription",
        "cmk.identity.v1.IdentityService/TransferSubscription",
        "cmk.identity.v1.IdentityService/WatchEvents",
        "cmk.identity.v1.TokenService/RotateSigningKey",
        "cmk.identity.v1.TokenService/RevokeSigningKey",
        "cmk.keyvault.v1.AuditService/StreamAuditRecords",
        "cmk.keyvault.v1.AuditService/CreateAuditCheckpoint",
        "cmk.keyvault.v1.AuditService/VerifyAuditLog",
        "cmk.keyvault.v1.EventService/WatchEvents",
        "cmk.speech.v1.SpeechResourceService/ApproveCmkApproval",
        "cmk.speech.v1.SpeechResourceService/RejectCmkApproval",
        "cmk.speech.v1.SpeechDevService/CreateBackdatedSpeechResource",
        "cmk.speech.v1.SpeechDevService/GetSealedRecord",
        "cmk.common.v1.DevService/AdvanceClock",
    }
)
"""Methods only the platform operator (or a platform service) may call, read from the services'
code (require_operator, require_event_reader, operator_required)."""

PAGE_KINDS = (
    "tenants", "subscriptions", "principals", "secrets", "roleAssignments", "signingKeys", "vaults", "keys",
    "versions", "deletedKeys", "audit", "resources", "applications",
)  # fmt: skip
"""The listings' page-token kinds (rpckit.storage.encode_page_token's first argument)."""
PAGE_KIND_OF = {
    "ListTenants": "tenants", "ListSubscriptions": "subscriptions", "ListPrincipals": "principals",
    "ListClientSecrets": "secrets", "ListRoleAssignments": "roleAssignments", "ListSigningKeys": "signingKeys",
    "ListVaults": "vaults", "ListDeletedVaults": "vaults", "ListKeys": "keys", "ListKeyVersions": "versions",
    "ListDeletedKeys": "deletedKeys", "ListAuditRecords": "audit", "ListSpeechResources": "resources",
    "ListApplications": "applications",
}  # fmt: skip
"""The kind each listing's page tokens have: a hostile token of the right kind gets past the kind check."""

DEEP_JSON = "[" * 1500 + "]" * 1500
DEEP_OBJECT = '{"a":' * 1500 + "1" + "}" * 1500
ODD_NUMBERS = ("\u00b2", "\u0663", "\uff11", "9" * 19, "9" * 30, "9" * 5000, "-1", "-0", "0" * 30, "1e3", " 1")
"""Numbers as text that str.isdigit() passes but int() does not, or int() passes but SQLite's
64-bit integers do not, or neither."""
ODD_UNICODE = (
    "\u202e",  # right-to-left override
    "\u200b",  # zero width space
    "\ufeff",  # byte order mark
    "e\u0301",  # combining accent
    "\uff0e\uff0e\uff0f",  # full-width ../
    "\u0430dmin",  # Cyrillic a
    "\U0001f600",
    "\U0010ffff",
    "\ufffe",
    "\u2028",
    "\x7f",
    "\x1b[31m",
    "\u00b2",  # superscript two: str.isdigit() but not int()
    "\u0663\u0664",  # Arabic-Indic digits
    "\uff11\uff12",  # full-width digits
    "\u2167",  # roman numeral eight
    "\u0130",  # dotted capital I: lower() grows
    "\u00df",  # sharp s: upper() grows
)
STATIC_STRINGS = (
    "", " ", "a", "\x00", "a\x00b", "\x00" * 16, "..", ".", "/", "//", "\\", "../../../../etc/passwd",
    "vaults/../x", "vaults/%2e%2e/x", "vaults/x/../../tenants", "tenants/../subscriptions/x", "..\\..\\windows",
    "%00", "%2F", "*", "%", "_", "?", "#", "null", "None", "true", "[]", "{}", "[", "{", '"', "'",
    "'; DROP TABLE tenants; --", '" OR 1=1 --', "${jndi:ldap://x/a}", "{{7*7}}", "\r\nX-Injected: 1", "\n", "\t",
    DEEP_JSON, DEEP_OBJECT, '{"a": ' + DEEP_JSON + "}", "9" * 400, "9" * 5000, "1e309", "-1", "-0", "0", "NaN",
    "Infinity", "18446744073709551616", "-9223372036854775809", "0x7fffffffffffffff", "1_000",
    "a" * 63, "a" * 64, "a" * 65, "a" * 90, "a" * 91, "a" * 256, "a" * 1025,
    "00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff",
    "00000000-0000-0000-0000-00000000000g", "{00000000-0000-0000-0000-000000000000}",
    "00000000000000000000000000000000", "https://", "https://x.vault.azure.net/keys/", "file:///etc/passwd",
    "https://contoso-cmk.vault.azure.net:99999/keys/cmk", "https://user@contoso-cmk.vault.azure.net/keys/cmk",
    "/subscriptions/", "/subscriptions//resourceGroups//providers/Microsoft.CognitiveServices/accounts/",
    "P", "P0D", "P6D", "P7D", "P99999Y", "P99999D", "P\u0669\u0669D", "PT1H", "-P1D", "P1.5D",
)  # fmt: skip
PLAIN_STRINGS: dict[str, tuple[str, ...]] = {
    "audience": tuple(sorted(audiences.ALL)),
    "location": ("westeurope", "eastus"),
    "resource_group": ("rg1", "rg2"),
    "target_resource_group": ("rg1", "rg2"),
    "display_name": ("fuzz", "Fuzz name"),
    "note": ("please",),
    "configuration_json": ('{"commands": ["TurnOn"]}', "{}", "[]"),
    "key_permissions": ("get", "list", "create", "wrapKey", "unwrapKey", "encrypt", "decrypt", "rotate", "purge"),
    "add_permissions": ("get", "wrapKey", "unwrapKey", "delete", "purge"),
    "remove_permissions": ("get", "wrapKey", "unwrapKey"),
    "time_after_create": ("P90D", "P7D", "P1Y"),
    "time_before_expiry": ("P30D", "P7D"),
    "expiry_time": ("P1Y", "P90D"),
    "result": ("success", "denied", "failure"),
    "platform_service": ("", "speech", "keyvault"),
    "account_name": ("fuzz1", "speech1"),
    "key_name": ("cmk", "fuzzkey"),
    "vault_name": ("contoso-cmk", "fuzz-vault"),
    "authoring_key": ("luis-authoring",),
    "prediction_key": ("luis-prediction",),
    "etag": ("W/1", '"1"'),
}
"""Plausible values for fields the services' answers do not name (or not yet)."""
ALIASES: dict[str, tuple[str, ...]] = {
    "parent": ("name",),
    "key": ("key_id", "name"),
    "principal_id": ("object_id", "principal_id"),
    "owner_object_id": ("object_id",),
    "caller_object_id": ("object_id",),
    "target_tenant_id": ("tenant_id",),
    "target_subscription_id": ("subscription_id",),
    "key_subscription_id": ("subscription_id",),
    "scope": ("scope", "resource_id"),
    "key_uri": ("key_id", "key_uri"),
    "page_token": ("next_page_token",),
    "plaintext": ("plaintext", "ciphertext", "value"),
    "ciphertext": ("ciphertext", "plaintext", "value"),
    "key_material": ("public_jwk",),
    "client_secret": ("secret_value",),
}
"""Request fields whose plausible values are found under other names in the answers."""
FIELD_STAND_INS: dict[str, tuple[str, ...]] = {
    "name": ("parent", "key", "vault_name"),
    "value": ("plaintext", "ciphertext"),
}
"""The request field to blame when a refusal names a field the request does not have (the key
service names a bad `parent` "name" and a missing plaintext or ciphertext "value")."""
PLAIN_INTS: dict[str, tuple[int, ...]] = {
    "page_size": (1, 10, 100),
    "key_size": (2048, 3072, 4096),
    "soft_delete_retention_days": (7, 30, 90),
    "lifetime_days": (1, 30, 365),
    "recoverable_days": (7, 90),
    "after_sequence": (0, 1, 5),
    "seconds": (1, 60, 86_400),
    "count": (1, 10),
}


# --- the targets ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One method of one service, as the fuzzer calls it."""

    service: str  # identity, keyvault, speech
    endpoint: str
    method: descriptor.MethodDescriptor
    audience: str

    @property
    def short(self) -> str:
        return f"{self.method.containing_service.full_name}/{self.method.name}"

    @property
    def path(self) -> str:
        return f"/{self.short}"

    @property
    def streaming(self) -> bool:
        return bool(self.method.server_streaming)

    @property
    def operator_only(self) -> bool:
        return self.short in OPERATOR_ONLY

    @property
    def phase(self) -> int:
        name = self.method.name
        return 2 if name.startswith(PHASE_TWO_PREFIXES) or name in PHASE_TWO_METHODS else 1

    @property
    def writes(self) -> bool:
        return not self.method.name.startswith(READ_PREFIXES)


SERVICE_MODULES: dict[str, tuple[ModuleType, ...]] = {
    "identity": (identity_service_pb2, dev_service_pb2),
    "keyvault": (keyvault_service_pb2, dev_service_pb2),
    "speech": (speech_service_pb2, dev_service_pb2),
}


def targets_of(service: str, endpoint: str, audience_of: Callable[[str], str]) -> list[Target]:
    """Every method of every service (by the descriptors) that `service` serves."""
    found = []
    for module in SERVICE_MODULES[service]:
        for svc in module.DESCRIPTOR.services_by_name.values():
            for method in svc.methods:
                found.append(Target(service, endpoint, method, audience_of(svc.full_name)))
    return found


# --- harvested values ------------------------------------------------------------------------


class Pool:
    """Values the services have answered with, by field name and shape: real names and ids (of
    every tenant and kind), page tokens, ciphertexts. Plausible values come from here."""

    PER_SHAPE = 8

    def __init__(self) -> None:
        self.strings: dict[str, dict[str, list[str]]] = {}
        self.bytes: dict[str, list[bytes]] = {}

    def add(self, message: Message) -> None:
        for fd, value in message.ListFields():
            values = value if fd.is_repeated else [value]
            if fd.message_type is not None and _is_map(fd):
                # (a map entry's class takes key and value; typed loosely, as types-protobuf's
                # stubs of Message's constructor differ from release to release)
                entry: Callable[..., Message] = message_factory.GetMessageClass(fd.message_type)
                values = [entry(key=k, value=v) for k, v in value.items()]
            for v in values:
                if fd.type == FD.TYPE_MESSAGE:
                    self.add(v)
                elif fd.type == FD.TYPE_STRING and 0 < len(v) <= 512:
                    self._keep(self.strings.setdefault(fd.name, {}).setdefault(shape(v), []), v)
                elif fd.type == FD.TYPE_BYTES and 0 < len(v) <= 4096:
                    self._keep(self.bytes.setdefault(fd.name, []), v)

    def _keep(self, into: list[Any], value: Any) -> None:
        if value in into:
            return
        into.append(value)
        if len(into) > self.PER_SHAPE:
            del into[len(into) // 2]  # keep the first ones (the world's own) and the newest

    def strings_for(self, name: str) -> list[str]:
        found: list[str] = []
        for key in (name, *ALIASES.get(name, ())):
            for values in self.strings.get(key, {}).values():
                found.extend(values)
        return found + list(PLAIN_STRINGS.get(name, ()))

    def bytes_for(self, name: str) -> list[bytes]:
        found: list[bytes] = []
        for key in (name, *ALIASES.get(name, ())):
            found.extend(self.bytes.get(key, ()))
        return found

    def any_string(self, rng: random.Random) -> str | None:
        """A value of any field and any shape (each shape as likely as another)."""
        shapes = sorted((k, s) for k, by_shape in self.strings.items() for s in by_shape)
        if not shapes:
            return None
        key, form = rng.choice(shapes)
        return rng.choice(self.strings[key][form])


# --- inputs ----------------------------------------------------------------------------------


@dataclass
class Input:
    body: bytes
    shown: str
    kind: str  # structured, mutated


def _short(value: Any) -> str:
    if isinstance(value, str | bytes) and len(value) > 60:
        return f"{value[:40]!r}...(len {len(value)})"
    return repr(value)


def show(message: Message, limit: int = 600) -> str:
    """A compact one-line rendering of a request: long values summarized."""

    def render(m: Message) -> str:
        parts = []
        for fd, value in m.ListFields():
            if _is_map(fd):
                items = list(value.items())
                text = f"{{{len(items)} entries: " + ", ".join(f"{_short(k)}: {_short(v)}" for k, v in items[:3]) + "}"
            elif fd.is_repeated:
                items = list(value)
                shown = [render(v) if fd.type == FD.TYPE_MESSAGE else _short(v) for v in items[:3]]
                text = f"[{len(items)} items: " + ", ".join(shown) + "]"
            elif fd.type == FD.TYPE_MESSAGE:
                text = render(value)
            else:
                text = _short(value)
            parts.append(f"{fd.name}={text}")
        return "{" + ", ".join(parts) + "}"

    text = render(message)
    return text if len(text) <= limit else text[:limit] + "..."


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_HEX = re.compile(r"[0-9a-fA-F]{16,}")
_DIGITS = re.compile(r"[0-9]+")
_B64 = re.compile(r"[A-Za-z0-9_-]{20,}")
_STD_B64 = re.compile(r"[A-Za-z0-9+/]{20,}={0,2}")


_FORM = re.compile(r"must (?:look like|be) (?:a key identifier )?(\S*\{\S*)")
_OPTIONAL = re.compile(r"\[.*\]")
_PLACEHOLDER = re.compile(r"\{[^}]*\}")
_COLLECTION = re.compile(r"[a-z][A-Za-z]*")
_HOST = re.compile(r"^(https?://)[^./]+\.")


def shape(value: str) -> str:
    """A value's form, ids, numbers and the names after collection words abstracted:
    tenants/*/principals/* for every principal's name, vaults/*/keys/* for every key's. A
    refusal of one value's form blames every value of that form."""
    if _STD_B64.fullmatch(value) and ("+" in value or "=" in value):
        return "B"  # a signature, a key: its content is no form
    text = _HOST.sub(r"\1*.", _DIGITS.sub("9", _B64.sub("B", _HEX.sub("H", _UUID.sub("U", value)))))
    if "/" not in text:
        return text
    segments = text.split("/")
    after_collection = False
    for i, segment in enumerate(segments):
        if after_collection and segment:
            segments[i], after_collection = "*", False
        else:
            after_collection = bool(_COLLECTION.fullmatch(segment))
    return "/".join(segments)


def resolve(desc: Any, field_path: str) -> list[str]:
    """The parts of a refusal's field path ("vault.name", "lifetime_actions[0]") as fields of the
    request; a path the request does not have is looked for as a stand-in (FIELD_STAND_INS) or
    within the request's messages ("name" for "vault.name"). Empty if not found."""
    parts = field_path.replace("]", "").split(".")
    head = parts[0].partition("[")[0]
    if head in desc.fields_by_name:
        return parts
    for stand_in in FIELD_STAND_INS.get(head, ()):
        if stand_in in desc.fields_by_name:
            return [stand_in, *parts[1:]]
    for fd in desc.fields:
        if fd.message_type is not None and not _is_map(fd) and head in fd.message_type.fields_by_name:
            return [fd.name, *parts]
    return []


def _is_map(fd: Any) -> bool:
    return fd.message_type is not None and bool(fd.message_type.GetOptions().map_entry)


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _tag(number: int, wire: int) -> bytes:
    return _varint((number << 3) | wire)


class Generator:
    """Builds hostile requests of a method's input type, by field type, from one seeded rng."""

    def __init__(self, rng: random.Random, pool: Pool) -> None:
        self.rng = rng
        self.pool = pool
        self.method = ""
        """The method being generated for: plausible values are learned per method and field."""
        self.good: dict[tuple[str, str], list[str]] = {}
        """Values of each (method, field) in requests the service accepted."""
        self.bad: dict[tuple[str, str], set[Any]] = {}
        """Values of each (method, field) that a refusal named the field of (ErrorInfo "field")."""
        self.bad_shapes: dict[tuple[str, str], set[str]] = {}
        """Shapes (see `shape`) of values an INVALID_ARGUMENT named the field of."""
        self.required: set[tuple[str, str]] = set()
        """Fields a FIELD_REQUIRED named: plausible requests always set them."""
        self.forms: dict[tuple[str, str], str] = {}
        """The shape a refusal's message says a field's values have ("must look like ...")."""
        self._paths: dict[str, list[tuple[FD, ...]]] = {}

    # learning

    def accepted(self, method: str, message: Message) -> None:
        for fd, value in message.ListFields():
            if fd.type == FD.TYPE_MESSAGE and not _is_map(fd):
                for v in value if fd.is_repeated else [value]:
                    self.accepted(method, v)
            elif fd.type == FD.TYPE_STRING and not fd.is_repeated and len(value) <= 4096:
                known = self.good.setdefault((method, fd.name), [])
                if value not in known and len(known) < 16:
                    known.append(value)
                self.bad.get((method, fd.name), set()).discard(value)
                self.bad_shapes.get((method, fd.name), set()).discard(shape(value))

    def refused(
        self, method: str, message: Message, field_path: str, reason: str, invalid: bool, text: str = ""
    ) -> None:
        """Blame the value at `field_path` (as "vault.name" or "policy.lifetime_actions[0]"): an
        INVALID_ARGUMENT blames the value's shape (every value of that form), another code the
        value itself; FIELD_REQUIRED makes the field one plausible requests always set."""
        value: Any = message
        last = ""
        parts = resolve(message.DESCRIPTOR, field_path)
        for part in parts:
            name, _, index = part.partition("[")
            if not isinstance(value, Message) or name not in value.DESCRIPTOR.fields_by_name:
                return
            value, last = getattr(value, name), name
            if index.isdecimal() and value is not None:
                try:
                    value = value[int(index)]
                except (IndexError, TypeError):
                    return
        if reason == "FIELD_REQUIRED" or (invalid and value in ("", 0, False)):
            self.required.add((method, last))
        form = _FORM.search(text)
        if form is not None:  # "must look like tenants/{tenant_id}": the form values of this field take
            example = _OPTIONAL.sub("", form.group(1)).rstrip(".,;")
            self.forms[(method, last)] = shape(_PLACEHOLDER.sub("x", example))
        if isinstance(value, str) and value not in self.good.get((method, last), ()):
            if invalid:
                self.bad_shapes.setdefault((method, last), set()).add(shape(value))
            else:
                self.bad.setdefault((method, last), set()).add(value)
        elif isinstance(value, int):
            self.bad.setdefault((method, last), set()).add(value)

    def refused_about(self, method: str, message: Message, mentioned: Iterable[str]) -> None:
        """A refusal that names no field but names values (ErrorInfo metadata, as a tenant or a
        vault): blame the request's string values that contain one of them."""
        needles = [m for m in mentioned if len(m) >= 3]
        for fd, value in message.ListFields():
            if fd.type == FD.TYPE_STRING and not fd.is_repeated and any(n in value for n in needles):
                if value not in self.good.get((method, fd.name), ()):
                    self.bad.setdefault((method, fd.name), set()).add(value)
            elif fd.type == FD.TYPE_MESSAGE and not fd.is_repeated and not _is_map(fd):
                self.refused_about(method, value, needles)

    def blamed(self, method: str, name: str, value: Any) -> bool:
        if value in self.bad.get((method, name), ()):
            return True
        return isinstance(value, str) and shape(value) in self.bad_shapes.get((method, name), ())

    # whole requests

    def request(self, target: Target, corpus: Sequence[bytes]) -> Input:
        self.method = target.short
        roll = self.rng.random()
        if roll < 0.12:
            return self.mutated(target, corpus)
        for _ in range(8):
            if roll < 0.22 or (not corpus and roll < 0.5):
                message = self.new(target.method.input_type)
                self.fill(message, 0.0, depth=0)  # a plausible request: it may be accepted (and feed the corpus)
            elif roll < 0.27:
                message = self.new(target.method.input_type)
                self.fill(message, 1.0, depth=0)  # every field hostile
            else:
                message = self.targeted(target, corpus)
            body = message.SerializeToString()
            if len(body) <= MAX_BODY:
                return Input(body, show(message), "structured")
        message = self.new(target.method.input_type)
        return Input(b"", show(message), "structured")

    def plausible(self, target: Target) -> bytes:
        self.method = target.short
        message = self.new(target.method.input_type)
        self.fill(message, 0.0, depth=0)
        return message.SerializeToString()

    def targeted(self, target: Target, corpus: Sequence[bytes]) -> Message:
        """An accepted request (or a plausible one) with one to three of its fields made hostile."""
        message = self.new(target.method.input_type)
        if corpus:
            message.ParseFromString(self.rng.choice(corpus))
        else:
            self.fill(message, 0.0, depth=0)
        paths = self.paths(target.method.input_type)
        if not paths:
            return message
        for path in self.rng.sample(paths, min(len(paths), self.rng.choice((1, 1, 1, 2, 2, 3)))):
            self.make_hostile(message, path)
        return message

    def paths(self, desc: descriptor.Descriptor) -> list[tuple[FD, ...]]:
        """Every field of a message type and of the message types within it (three deep)."""
        if desc.full_name not in self._paths:
            found: list[tuple[FD, ...]] = []

            def walk(d: descriptor.Descriptor, prefix: tuple[FD, ...]) -> None:
                for fd in d.fields:
                    found.append((*prefix, fd))
                    sub = fd.message_type
                    if (
                        sub is not None
                        and not sub.GetOptions().map_entry
                        and not sub.full_name.startswith("google.")
                        and len(prefix) < 2
                    ):
                        walk(sub, (*prefix, fd))

            walk(desc, ())
            self._paths[desc.full_name] = found
        return self._paths[desc.full_name]

    def make_hostile(self, message: Message, path: tuple[FD, ...]) -> None:
        holder = message
        for fd in path[:-1]:
            if fd.is_repeated:
                items = getattr(holder, fd.name)
                holder = self.rng.choice(list(items)) if len(items) else items.add()
            else:
                holder = getattr(holder, fd.name)
                holder.SetInParent()
        fd = path[-1]
        holder.ClearField(fd.name)
        if _is_map(fd):
            self.fill_map(getattr(holder, fd.name), fd, True)
        elif fd.is_repeated:
            self.fill_repeated(holder, fd, True, len(path))
        elif fd.type == FD.TYPE_MESSAGE:
            self.fill_message(holder, fd, True, len(path))
        else:
            setattr(holder, fd.name, self.scalar(fd, True, small=False))

    @staticmethod
    def new(desc: descriptor.Descriptor) -> Message:
        return message_factory.GetMessageClass(desc)()

    def mutated(self, target: Target, corpus: Sequence[bytes]) -> Input:
        """A request the service took (or a plausible one), its bytes mutated 1-4 times."""
        base = self.rng.choice(corpus) if corpus and self.rng.random() < 0.8 else self.plausible(target)
        data = bytearray(base)
        ops = []
        for _ in range(self.rng.randint(1, 4)):
            op = self.rng.randrange(10)
            ops.append(op)
            pos = self.rng.randint(0, len(data))
            if op == 0 and data:  # flip a bit
                i = self.rng.randrange(len(data))
                data[i] ^= 1 << self.rng.randrange(8)
            elif op == 1 and data:  # set a byte
                data[self.rng.randrange(len(data))] = self.rng.randrange(256)
            elif op == 2:  # insert a few bytes
                data[pos:pos] = self.rng.randbytes(self.rng.randint(1, 8))
            elif op == 3 and data:  # delete a range
                data[pos : pos + self.rng.randint(1, 16)] = b""
            elif op == 4:  # truncate
                del data[pos:]
            elif op == 5 and data:  # duplicate a range
                end = min(len(data), pos + self.rng.randint(1, 32))
                data[pos:pos] = data[pos:end]
            elif op == 6:  # an unknown field, of any wire type
                number = self.rng.choice((99, 1000, 19_000, 536_870_911))
                wire = self.rng.choice((0, 1, 2, 5))
                payload = {0: _varint(self.rng.getrandbits(64)), 1: self.rng.randbytes(8), 5: self.rng.randbytes(4)}
                data += _tag(number, wire) + payload.get(wire, _varint(3) + b"abc")
            elif op == 7:  # invalid UTF-8 in a string field of the request
                strings = [f for f in target.method.input_type.fields if f.type == FD.TYPE_STRING]
                number = self.rng.choice(strings).number if strings else 1
                bad = self.rng.choice((b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"a\x80b", b"\xf4\x90\x80\x80"))
                data += _tag(number, 2) + _varint(len(bad)) + bad
            elif op == 8:  # an over-long varint
                data[pos:pos] = b"\xff" * self.rng.randint(10, 12)
            else:  # a length prefix beyond the end
                data += _tag(self.rng.randint(1, 15), 2) + _varint(self.rng.choice((1 << 20, 1 << 31, 1 << 62)))
        body = bytes(data[:MAX_BODY])
        hexed = body[:120].hex() + ("..." if len(body) > 120 else "")
        return Input(body, f"mutated(ops={ops}, {len(body)} bytes: {hexed})", "mutated")

    # fields

    def fill(self, message: Message, hostility: float, depth: int) -> None:
        for fd in message.DESCRIPTOR.fields:
            if (self.method, fd.name) not in self.required and self.rng.random() < (0.15 if hostility else 0.4):
                continue  # leave it unset
            hostile = self.rng.random() < hostility
            if _is_map(fd):
                self.fill_map(getattr(message, fd.name), fd, hostile)
            elif fd.is_repeated:
                self.fill_repeated(message, fd, hostile, depth)
            elif fd.type == FD.TYPE_MESSAGE:
                self.fill_message(message, fd, hostile, depth)
            else:
                setattr(message, fd.name, self.scalar(fd, hostile, small=False))

    def fill_repeated(self, message: Message, fd: Any, hostile: bool, depth: int) -> None:
        items = getattr(message, fd.name)
        if hostile:
            count = self.rng.choice((0, 1, 1, 2, 10, REPEATED_MANY))
        else:
            count = self.rng.choice((1, 1, 2, 3))
        small = count > 10
        for _ in range(count):
            if fd.type == FD.TYPE_MESSAGE:
                item = items.add()
                if not small or self.rng.random() < 0.01:
                    self.fill(item, 0.5 if hostile else 0.0, depth + 1)
            else:
                items.append(self.scalar(fd, hostile, small=small))

    def fill_map(self, entries: Any, fd: Any, hostile: bool) -> None:
        key_fd = fd.message_type.fields_by_name["key"]
        value_fd = fd.message_type.fields_by_name["value"]
        count = self.rng.choice((0, 1, 3, 10_000)) if hostile else self.rng.choice((1, 2))
        for _ in range(count):
            small = count > 10
            entries[self.scalar(key_fd, hostile, small=small)] = self.scalar(value_fd, hostile, small=small)

    def fill_message(self, message: Message, fd: Any, hostile: bool, depth: int) -> None:
        sub = getattr(message, fd.name)
        full = fd.message_type.full_name
        if full == "google.protobuf.Timestamp":
            self.timestamp(sub, hostile)
        elif full == "google.protobuf.FieldMask":
            self.field_mask(sub, message, hostile)
        elif hostile and (depth >= 3 or self.rng.random() < 0.3):
            sub.SetInParent()  # present and empty
        elif depth < 5:
            sub.SetInParent()
            self.fill(sub, self.rng.choice((0.3, 1.0)) if hostile else 0.0, depth + 1)

    def timestamp(self, stamp: timestamp_pb2.Timestamp, hostile: bool) -> None:
        if hostile:
            stamp.seconds, stamp.nanos = self.rng.choice(
                (
                    (-62_135_596_801, 0), (253_402_300_800, 0), (2**63 - 1, 0), (-(2**63), 0), (0, -1),
                    (-1, 999_999_999), (0, 1_000_000_000), (0, 2**31 - 1), (0, -(2**31)), (10**13, 0), (0, 0),
                )
            )  # fmt: skip
        else:
            stamp.seconds = self.rng.randint(1_700_000_000, 2_100_000_000)
            stamp.nanos = self.rng.choice((0, 500_000_000))

    def field_mask(self, mask: field_mask_pb2.FieldMask, parent: Message, hostile: bool) -> None:
        known = sorted(
            f.name
            for fd in parent.DESCRIPTOR.fields
            if fd.message_type is not None and not fd.message_type.full_name.startswith("google.")
            for f in fd.message_type.fields
        )
        if hostile:
            choices: list[list[str]] = [
                [""], ["*"], ["unknown_field"], ["name.tenant_id"], ["a.b.c"], ["x" * 10_000],
                [k.upper() for k in known[:2]], known * 3, ["\x00"], [DEEP_JSON],
                ["path"] * REPEATED_MANY, [*known, "bogus"], ["tenant.display_name"], ["vault.name"],
            ]  # fmt: skip
            mask.paths.extend(self.rng.choice(choices))
        elif known:
            mask.paths.extend(self.rng.sample(known, self.rng.randint(1, min(3, len(known)))))

    # scalars

    def scalar(self, fd: Any, hostile: bool, small: bool) -> Any:
        kind = fd.type
        if kind == FD.TYPE_STRING:
            return self.string(fd.name, hostile, small)
        if kind == FD.TYPE_BYTES:
            return self.bytes_value(fd.name, hostile, small)
        if kind == FD.TYPE_BOOL:
            return self.rng.random() < 0.5
        if kind == FD.TYPE_ENUM:
            values = [v.number for v in fd.enum_type.values]
            if hostile:
                return self.rng.choice((*values, -1, 99, len(values), 2**31 - 1, -(2**31)))
            fitting = [v for v in values if v and not self.blamed(self.method, fd.name, v)]
            return self.rng.choice(fitting or values)
        if kind in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
            return self.rng.choice(
                (0.0, -0.0, float("nan"), float("inf"), -1.0, 1e308 if kind == FD.TYPE_DOUBLE else 1e38)
            )
        return self.integer(fd, hostile)

    def integer(self, fd: Any, hostile: bool) -> int:
        bits = (
            64 if fd.type in (FD.TYPE_INT64, FD.TYPE_SINT64, FD.TYPE_SFIXED64, FD.TYPE_UINT64, FD.TYPE_FIXED64) else 32
        )
        unsigned = fd.type in (FD.TYPE_UINT32, FD.TYPE_UINT64, FD.TYPE_FIXED32, FD.TYPE_FIXED64)
        low, high = (0, 2**bits - 1) if unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        if not hostile:
            return self.rng.choice(PLAIN_INTS.get(fd.name, (0, 1, 10)))
        picks = [0, -1, 1, low, high, low + 1, high - 1, 2**31 - 1, -(2**31), 2**31, 10**9, 86_400 * 366 * 10_000]
        picks.append(self.rng.randint(low, high))
        return int(min(high, max(low, self.rng.choice(picks))))

    def string(self, name: str, hostile: bool, small: bool) -> str:
        rng = self.rng
        plausible = self.pool.strings_for(name)
        if not hostile:
            return self.plausible_string(name, plausible)
        roll = rng.random()
        if small:
            return rng.choice(("", "a", "\x00", "..", "x" * 64, *ODD_UNICODE))
        if name == "page_token" and rng.random() < 0.6:
            return self.page_token()
        numbered = [p for p in plausible if _DIGITS.search(p)]
        if numbered and rng.random() < 0.2:  # a real value with a number the service will parse
            return _DIGITS.sub(lambda _: rng.choice(ODD_NUMBERS), rng.choice(numbered), count=1)
        if roll < 0.25:
            return rng.choice(STATIC_STRINGS)
        if roll < 0.35:
            return rng.choice(ODD_UNICODE) * rng.choice((1, 3, 50))
        if roll < 0.45:
            return rng.choice("xa\u00e9\U0001f600/") * rng.randint(*LONG_STRING)
        if roll < 0.55:
            return self.page_token()
        if roll < 0.65:
            return "".join(chr(self._code_point()) for _ in range(rng.randint(1, 40)))
        other = self.pool.any_string(rng)  # a real value of another field or kind (or tenant)
        real = rng.choice(plausible) if plausible else (other or "x")
        if roll < 0.75 and other is not None:
            return other
        return self.twist(real)

    def plausible_string(self, name: str, candidates: list[str]) -> str:
        """A value the service accepted for this field of this method, or one of the field's
        name (or alias) in the pool, or any value in the pool: none a refusal blamed."""
        rng = self.rng
        good = self.good.get((self.method, name))
        if good and rng.random() < 0.8:
            return rng.choice(good)
        if name == "page_token" and rng.random() < 0.85:
            return ""
        fitting = [c for c in candidates if not self.blamed(self.method, name, c)]
        form = self.forms.get((self.method, name))
        formed = [c for c in fitting if form and shape(c).startswith(form)]
        if formed and rng.random() < 0.85:
            return rng.choice(formed)
        if fitting and rng.random() < 0.7:
            by_shape: dict[str, list[str]] = {}
            for c in fitting:
                by_shape.setdefault(shape(c), []).append(c)
            return rng.choice(by_shape[rng.choice(sorted(by_shape))])  # every form as likely as another
        for _ in range(8):
            other = self.pool.any_string(rng)
            if other is not None and not self.blamed(self.method, name, other):
                return other
        return rng.choice(fitting) if fitting else rng.choice(("", "fuzz", "x1"))

    def twist(self, real: str) -> str:
        """A real name, bent: traversal, case, padding, a segment swapped for another tenant's."""
        rng = self.rng
        other = self.pool.any_string(rng) or "x"
        forms = (
            real + "/../x", real + "/..", "../" + real, real + "/", "/" + real, real.upper(), real + "\x00",
            real + "\u200b", real + real, real[: len(real) // 2], real.replace("/", "//"), real + "/" + other,
            real.replace("-", ""), " " + real, real + "%2F..", real.replace("/", "%2F"), real + "?x=1", real + "#x",
        )  # fmt: skip
        if _DIGITS.search(real) and rng.random() < 0.3:
            swap = rng.choice(ODD_NUMBERS)
            return _DIGITS.sub(lambda _: swap, real, count=1 if rng.random() < 0.5 else 0)
        segments = real.split("/")
        if len(segments) > 1:
            i = rng.randrange(len(segments))
            segments[i] = rng.choice((other, "..", "", "*", other.split("/")[-1]))
            return "/".join(segments)
        return rng.choice(forms)

    def page_token(self) -> str:
        rng = self.rng
        own = PAGE_KIND_OF.get(self.method.rpartition("/")[2])
        kind = own if own and rng.random() < 0.7 else rng.choice((*PAGE_KINDS, "", "x"))
        if rng.random() < 0.5:
            after = rng.choice(ODD_NUMBERS)
        else:
            after = rng.choice(
                (
                    "", "0", "' OR 1=1 --", "\x00", "x" * 10_000, "00000000-0000-0000-0000-000000000000",
                    self.pool.any_string(rng) or "z",
                )
            )  # fmt: skip
        raw = rng.choice(
            (
                json.dumps({"k": kind, "a": after}).encode(),
                json.dumps({"k": kind, "a": after}).encode(),
                json.dumps({"k": kind, "a": after}).encode(),
                json.dumps({"k": kind, "a": rng.choice((1, None, [], {}, 1.5))}).encode(),
                DEEP_JSON.encode(),
                b"[]",
                b"\xff\xfe",
                rng.randbytes(24),
            )
        )
        token = base64.urlsafe_b64encode(raw).decode()
        return token.rstrip("=") if rng.random() < 0.7 else token + rng.choice(("", "!", "=", "%%"))

    def bytes_value(self, name: str, hostile: bool, small: bool) -> bytes:
        rng = self.rng
        real = self.pool.bytes_for(name)
        if not hostile:
            return rng.choice(real) if real and rng.random() < 0.7 else rng.randbytes(32)
        if small:
            return rng.choice((b"", b"\x00", rng.randbytes(4)))
        roll = rng.random()
        if roll < 0.15:
            return b""
        if roll < 0.25:
            return rng.randbytes(MiB)
        if roll < 0.3:
            return b"\x00" * MiB
        if roll < 0.5 and real:
            data = bytearray(rng.choice(real))
            if data:
                data[rng.randrange(len(data))] ^= 0xFF
            return bytes(data[: rng.randint(0, len(data))]) if rng.random() < 0.3 else bytes(data)
        return rng.randbytes(rng.choice((1, 15, 16, 31, 32, 33, 190, 256, 446, 512, 4096)))

    def _code_point(self) -> int:
        while True:
            point = self.rng.choice(
                (self.rng.randint(0, 0x7F), self.rng.randint(0x80, 0xFFFF), self.rng.randint(0x10000, 0x10FFFF))
            )
            if not 0xD800 <= point <= 0xDFFF:
                return point


# --- calls and checks ------------------------------------------------------------------------


@dataclass
class Outcome:
    code: grpc.StatusCode
    reason: str
    message: str
    has_info: bool
    messages: int = 0
    cut: bool = False
    response: bytes | None = None
    field: str = ""
    """The field a refusal names (ErrorInfo metadata "field")."""
    mentioned: tuple[str, ...] = ()
    """The values a refusal names (the rest of the ErrorInfo metadata)."""


@dataclass
class Failure:
    service: str
    method: str
    kind: str  # bad_code, no_error_info, hang, unhealthy, stored_on_refusal, error_logged
    code: str
    reason: str
    message: str
    input: str
    input_b64: str
    caller: str
    detail: str = ""
    log: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @property
    def signature(self) -> str:
        """What tells one bug from another: the kind, method and status, and where the logged
        exception was raised (inputs that meet the same bug share it)."""
        where = next((line.rpartition(" | ")[2] for line in self.log if " at " in line), "")
        if not where and self.code in ("INTERNAL", "UNKNOWN"):
            where = "(not logged: the log throttle held the line back)"
        where = re.sub(r"'[^']*'|\d+ digits", "...", where)  # the exception's text without the input's values
        return f"{self.kind} {self.method} {self.code}/{self.reason} {where}".strip()


class LogTap(logging.Handler):
    """Collects the servers' warnings and errors (with tracebacks) while an input is handled."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def drain(self) -> list[logging.LogRecord]:
        found, self.records = self.records, []
        return found


def render_log(record: logging.LogRecord) -> str:
    text = f"{record.levelname} {record.name}: {record.getMessage()}"
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = f" at {tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb is not None else ""
        text += f" | {type(exc).__name__}: {str(exc)[:300]}{where}"
    return text[:1000]


class Stored:
    """A digest of every table of the services' databases (logs aside), to tell whether a
    refused call stored anything."""

    def __init__(self, databases: dict[str, str | Path]) -> None:
        self._databases = databases
        self._open = contextlib.AsyncExitStack()
        self._readers: dict[str, raw_database.Query] = {}

    async def digest(self, services: Iterable[str]) -> dict[str, str]:
        found = {}
        for service in services:
            location = self._databases.get(service)
            if location is None:
                continue
            if service not in self._readers:  # one connection per database for the whole run
                self._readers[service] = await self._open.enter_async_context(raw_database.reader(location, service))
            tables = await raw_database.digests(location, service, self._readers[service], skip=LOG_TABLES)
            if not tables:
                raise AssertionError(f"no tables found for {service} at {location}: the wrong database is watched")
            found.update({f"{service}.{table}": digest for table, digest in tables.items()})
        return found

    async def close(self) -> None:
        await self._open.aclose()


@dataclass
class Figures:
    """What a run found, as the JSON report holds it."""

    seed: int
    inputs_per_service: int
    inputs: Counter[str] = field(default_factory=Counter)
    statuses: Counter[tuple[str, str]] = field(default_factory=Counter)
    by_service: dict[str, Counter[tuple[str, str]]] = field(default_factory=dict)
    by_method: dict[str, Counter[str]] = field(default_factory=dict)
    kinds: Counter[str] = field(default_factory=Counter)
    explored: Counter[str] = field(default_factory=Counter)
    explore_refusals: dict[str, Counter[str]] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    cross_tenant_ok: list[dict[str, str]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    store_checks: int = 0
    misnamed_fields: Counter[str] = field(default_factory=Counter)
    """Refusals whose ErrorInfo "field" is not a field of the request (what the service calls it)."""

    def as_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "inputs_per_service": self.inputs_per_service,
            "inputs": dict(self.inputs),
            "seconds": {k: round(v, 1) for k, v in self.seconds.items()},
            "input_kinds": dict(self.kinds),
            "explored": dict(self.explored),
            "never_accepted": {
                m: dict(self.explore_refusals.get(m, Counter()).most_common(3))
                for m in sorted(self.by_method)
                if not any(k.startswith("OK") for k in self.by_method[m])
                and not any(k.startswith("OK") for k in self.explore_refusals.get(m, ()))
            },
            "statuses": [{"code": c, "reason": r, "count": n} for (c, r), n in self.statuses.most_common()],
            "statuses_by_service": {
                s: [{"code": c, "reason": r, "count": n} for (c, r), n in counter.most_common()]
                for s, counter in self.by_service.items()
            },
            "methods": {m: dict(counter.most_common()) for m, counter in sorted(self.by_method.items())},
            "failure_groups": [
                {"signature": sig, "count": n, "first": next(f.as_dict() for f in self.failures if f.signature == sig)}
                for sig, n in Counter(f.signature for f in self.failures).most_common()
            ],
            "failures": [f.as_dict() for f in self.failures[:MAX_REPORTED_FAILURES]],
            "store_checks": self.store_checks,
            "misnamed_fields": dict(self.misnamed_fields.most_common()),
            "cross_tenant_ok": self.cross_tenant_ok,
        }

    def summary(self) -> str:
        lines = [f"seed {self.seed}, {self.inputs_per_service} inputs per service"]
        lines.append(f"  explored first: {dict(self.explored)} in {self.seconds.get('explore', 0):.1f} s")
        for service, n in self.inputs.items():
            lines.append(f"  {service}: {n} inputs in {self.seconds.get(service, 0):.1f} s")
        lines.append("  statuses: " + ", ".join(f"{c}/{r or '-'}: {n}" for (c, r), n in self.statuses.most_common(12)))
        lines.append(f"  failures: {len(self.failures)}")
        for sig, n in Counter(f.signature for f in self.failures).most_common():
            first = next(f for f in self.failures if f.signature == sig)
            lines.append(f"    {n} x {sig}: {first.message[:100]!r} input={first.input[:200]}")
        return "\n".join(lines)


@dataclass
class Callers:
    admin: TokenSource
    operator: TokenSource


class Fuzzer:
    """Sends generated inputs to the targets and checks each answer."""

    def __init__(
        self,
        targets: Iterable[Target],
        callers: Callers,
        *,
        seed: int,
        inputs_per_service: int,
        databases: dict[str, str | Path] | None = None,
        foreign: Iterable[str] = (),
    ) -> None:
        self.targets = sorted(targets, key=lambda t: (t.service, t.short))
        self.callers = callers
        self.rng = random.Random(seed)  # noqa: S311 (reproducible inputs, not secrets)
        self.pool = Pool()
        self.gen = Generator(self.rng, self.pool)
        self.figures = Figures(seed, inputs_per_service)
        self.inputs_per_service = inputs_per_service
        self.stored = Stored(databases) if databases else None
        self.foreign = [f for f in foreign if f]
        self.corpus: dict[str, list[bytes]] = {}
        self.channels: dict[str, grpc.aio.Channel] = {}
        self.unhealthy: set[str] = set()
        self.tap = LogTap()

    def channel(self, endpoint: str) -> grpc.aio.Channel:
        if endpoint not in self.channels:
            options = [("grpc.max_receive_message_length", 64 * MiB), ("grpc.max_send_message_length", 64 * MiB)]
            self.channels[endpoint] = grpc.aio.insecure_channel(endpoint, options=options)
        return self.channels[endpoint]

    async def close(self) -> None:
        for ch in self.channels.values():
            await ch.close()

    # harvesting

    def harvest(self, message: Message) -> None:
        self.pool.add(message)

    def seed(self, method: str, request: Message) -> None:
        """A valid request of `method` ("package.Service/Method"), to start its corpus with."""
        self.corpus.setdefault(method, []).append(request.SerializeToString())
        self.gen.accepted(method, request)

    async def explore(self, targets: Sequence[Target], rounds: int = 3, attempts: int = 20, enough: int = 2) -> None:
        """Learn plausible requests: each method is sent plausible requests (values from the pool,
        none a refusal blamed) until `enough` are accepted, listings first (they fill the pool).
        These calls are checked like the others and counted apart (figures.explored)."""
        ordered = sorted(targets, key=lambda t: (not t.method.name.startswith(("List", "Get")), t.short))
        for _ in range(rounds):
            for target in ordered:
                if target.streaming:
                    continue
                for _ in range(attempts):
                    if len(self.corpus.get(target.short, ())) >= enough:
                        break
                    body = self.gen.plausible(target)
                    await self.attempt(target, Input(body, show(self._parse(target, body)), "explore"), explore=True)

    def schedule(self) -> list[Target]:
        """Each service's inputs spread evenly over its methods; phase one of every service,
        then phase two (speech, key vault, identity), AdvanceClock last in each."""
        by_service: dict[str, list[Target]] = {}
        for t in self.targets:
            by_service.setdefault(t.service, []).append(t)
        phases: dict[tuple[int, str], list[Target]] = {}
        for service, targets in by_service.items():
            counts = [self.inputs_per_service // len(targets)] * len(targets)
            for i in self.rng.sample(range(len(targets)), self.inputs_per_service % len(targets)):
                counts[i] += 1
            for target, count in zip(targets, counts, strict=True):
                phases.setdefault((target.phase, service), []).extend([target] * count)
        order: list[Target] = []
        for key in [(1, s) for s in ("identity", "keyvault", "speech")] + [
            (2, s) for s in ("speech", "keyvault", "identity")
        ]:
            batch = phases.get(key, [])
            self.rng.shuffle(batch)
            batch.sort(key=lambda t: t.method.name == "AdvanceClock")  # stable: the rest stay shuffled
            order.extend(batch)
        return order

    async def run(self) -> Figures:
        root = logging.getLogger()
        root.addHandler(self.tap)
        try:
            started = time.monotonic()
            await self.explore([t for t in self.targets if t.phase == 1])
            self.figures.seconds["explore"] = time.monotonic() - started
            explored = set()
            for target in self.schedule():
                if target.service in self.unhealthy:
                    continue
                if target.phase == 2 and target.service not in explored:  # its phase two starts
                    explored.add(target.service)
                    started = time.monotonic()
                    two = [t for t in self.targets if t.service == target.service and t.phase == 2]
                    await self.explore(two, rounds=2, attempts=10, enough=1)
                    self.figures.seconds["explore"] += time.monotonic() - started
                started = time.monotonic()
                self.gen.method = target.short
                inp = self.gen.request(target, self.corpus.get(target.short, ()))
                await self.attempt(target, inp)
                self.figures.seconds[target.service] = self.figures.seconds.get(target.service, 0.0) + (
                    time.monotonic() - started
                )
        finally:
            root.removeHandler(self.tap)
            if self.stored is not None:
                await self.stored.close()
            await self.close()
        return self.figures

    def _names_foreign(self, message: Message) -> bool:
        """Whether a request names the other tenant's things (outside free-text fields)."""
        for fd, value in message.ListFields():
            values = value if fd.is_repeated else [value]
            if fd.type == FD.TYPE_MESSAGE and not _is_map(fd):
                if any(self._names_foreign(v) for v in values):
                    return True
            elif fd.type == FD.TYPE_STRING and fd.name not in FREE_TEXT:
                if any(f in v for v in values for f in self.foreign):
                    return True
        return False

    def _parse(self, target: Target, body: bytes) -> Message:
        message = self.gen.new(target.method.input_type)
        try:
            message.ParseFromString(body)
        except Exception:  # mutated bytes: nothing to learn from
            message = self.gen.new(target.method.input_type)
        return message

    async def attempt(self, target: Target, inp: Input, *, explore: bool = False) -> None:
        """Send one input, check the answer, the health and the databases, and learn from it."""
        as_operator = target.operator_only or self.rng.random() < 0.2
        token = await (self.callers.operator if as_operator else self.callers.admin)(target.audience)
        check_store = self.stored is not None and target.writes
        watched = WATCHED_DATABASES.get(target.service, (target.service,))
        before = await self.stored.digest(watched) if check_store and self.stored else {}
        self.figures.store_checks += check_store
        outcome = await self.call(target, inp.body, token)
        healthy = await self.healthy(target.endpoint)
        after = await self.stored.digest(watched) if check_store and self.stored else {}
        logs = self.tap.drain()

        fig = self.figures
        status = (outcome.code.name if not outcome.cut else "OK_STREAM_CUT", outcome.reason)
        if explore:
            fig.explored[status[0]] += 1
            fig.explore_refusals.setdefault(target.short, Counter())[
                f"{status[0]}/{status[1]} {outcome.field} {outcome.message[:90]}"
            ] += 1
        else:
            fig.inputs[target.service] += 1
            fig.kinds[inp.kind] += 1
            fig.statuses[status] += 1
            fig.by_service.setdefault(target.service, Counter())[status] += 1
            label = f"{status[0]}/{status[1]}" if status[1] else status[0]
            fig.by_method.setdefault(target.short, Counter())[label] += 1

        def fail(kind: str, detail: str = "") -> None:
            fig.failures.append(
                Failure(
                    target.service, target.short, kind, outcome.code.name, outcome.reason, outcome.message[:500],
                    inp.shown, base64.b64encode(inp.body).decode() if len(inp.body) <= 4096 else "",
                    "operator" if as_operator else "admin", detail, [render_log(r) for r in logs][:5],
                )
            )  # fmt: skip

        refused = outcome.code != grpc.StatusCode.OK
        if outcome.code in BAD_CODES:
            fail("bad_code")
        elif outcome.code == grpc.StatusCode.DEADLINE_EXCEEDED:
            fail("hang")
        elif refused and (not outcome.has_info or not outcome.reason):
            fail("no_error_info")
        if not healthy:
            fail("unhealthy")
            self.unhealthy.add(target.service)
        if refused and before != after:
            changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
            fail("stored_on_refusal", ", ".join(changed))
        if outcome.code not in BAD_CODES and any(r.levelno >= logging.ERROR for r in logs):
            fail("error_logged")

        if inp.kind == "mutated":
            return
        if refused and outcome.field:
            head = outcome.field.replace("]", "").split(".")[0].partition("[")[0]
            if head not in target.method.input_type.fields_by_name:
                fig.misnamed_fields[f"{target.short} names {outcome.field!r}"] += 1
            invalid = outcome.code == grpc.StatusCode.INVALID_ARGUMENT
            parsed = self._parse(target, inp.body)
            self.gen.refused(target.short, parsed, outcome.field, outcome.reason, invalid, outcome.message)
        elif refused and outcome.mentioned:
            self.gen.refused_about(target.short, self._parse(target, inp.body), outcome.mentioned)
        elif not refused:
            corpus = self.corpus.setdefault(target.short, [])
            if len(corpus) < 50 and len(inp.body) <= 64 * 1024 and inp.body not in corpus:
                corpus.append(inp.body)
            self.gen.accepted(target.short, self._parse(target, inp.body))
            if not as_operator and self.foreign and self._names_foreign(self._parse(target, inp.body)):
                fig.cross_tenant_ok.append({"method": target.short, "input": inp.shown})

    async def call(self, target: Target, body: bytes, token: str) -> Outcome:
        metadata = (("authorization", f"Bearer {token}"),)
        channel = self.channel(target.endpoint)
        try:
            if target.streaming:
                return await self._stream(channel, target, body, metadata)
            method: Any = channel.unary_unary(target.path)
            response = await asyncio.wait_for(method(body, metadata=metadata, timeout=CALL_DEADLINE), CALL_DEADLINE * 2)
        except grpc.aio.AioRpcError as error:
            return self._refused(error)
        except TimeoutError:
            return Outcome(grpc.StatusCode.DEADLINE_EXCEEDED, "", "no answer within twice the deadline", False)
        self._harvest(target, response)
        return Outcome(grpc.StatusCode.OK, "", "", False, response=response)

    async def _stream(self, channel: grpc.aio.Channel, target: Target, body: bytes, metadata: Any) -> Outcome:
        method: Any = channel.unary_stream(target.path)
        call = method(body, metadata=metadata, timeout=CALL_DEADLINE)
        received = 0
        deadline = asyncio.get_running_loop().time() + STREAM_CUTOFF
        try:
            while received < STREAM_MESSAGES:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    raise TimeoutError
                message = await asyncio.wait_for(call.read(), left)
                if message is grpc.aio.EOF:
                    return Outcome(grpc.StatusCode.OK, "", "", False, messages=received)
                received += 1  # not harvested: how many arrive before the cutoff depends on timing
        except grpc.aio.AioRpcError as error:
            outcome = self._refused(error)
            outcome.messages = received
            return outcome
        except TimeoutError:
            pass
        call.cancel()
        return Outcome(grpc.StatusCode.OK, "", "", False, messages=received, cut=True)

    def _refused(self, error: grpc.aio.AioRpcError) -> Outcome:
        try:
            info = error_info_of(error)
        except ValueError as unreadable:  # grpc_status: the details' code is not the call's (a limit replaced it)
            return Outcome(error.code(), "", f"{error.details()} [error_info_of raised: {unreadable}]", False)
        return Outcome(
            error.code(),
            info.reason if info else "",
            error.details() or "",
            info is not None,
            field=info.metadata.get("field", "") if info else "",
            mentioned=tuple(v for k, v in sorted(info.metadata.items()) if k != "field") if info else (),
        )

    def _harvest(self, target: Target, response: bytes) -> None:
        try:
            message = self.gen.new(target.method.output_type)
            message.ParseFromString(response)
        except Exception:  # an answer we cannot read adds nothing to the pool
            return
        self.pool.add(message)

    async def healthy(self, endpoint: str) -> bool:
        check: Any = self.channel(endpoint).unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        try:
            answer = await asyncio.wait_for(
                check(health_pb2.HealthCheckRequest(), timeout=HEALTH_DEADLINE), 2 * HEALTH_DEADLINE
            )
        except (grpc.aio.AioRpcError, TimeoutError):
            return False
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


def settings() -> tuple[int, int, Path | None]:
    """The seed, the inputs per service and the report path, from the environment."""
    seed = int(os.environ.get("CMK_FUZZ_SEED", DEFAULT_SEED))
    inputs = int(os.environ.get("CMK_FUZZ_INPUTS", DEFAULT_INPUTS))
    report = os.environ.get("CMK_FUZZ_REPORT")
    return seed, inputs, Path(report) if report else None


def write_report(figures: Figures, path: Path) -> None:
    path.write_text(json.dumps(figures.as_json(), indent=2, ensure_ascii=False) + "\n")
