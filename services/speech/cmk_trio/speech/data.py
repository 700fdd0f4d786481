"""The data the seed lists: Custom Commands application configuration and LUIS keys,
sealed with the resource's data key. Reads are transparent: the caller never sees which key
protects the data."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

from cmk_trio.platform.access import Access
from cmk_trio.rpckit import json_input
from cmk_trio.rpckit.clock import Clock
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.storage import ReadCache
from cmk_trio.rpckit.tokens import OPERATOR_ROLE, VerifiedToken
from cmk_trio.rpckit.validation import display_name, require_uuid
from cmk_trio.speech.envelope import (
    CannotDecrypt,
    DataKey,
    RandomBytes,
    open_sealed,
    record_binding,
    seal,
)
from cmk_trio.speech.errors import Aborted, FailedPrecondition, NotFound, invalid_field, operator_required
from cmk_trio.speech.model import Application, SealedLuisKeys, SpeechResource
from cmk_trio.speech.names import parse_resource_id
from cmk_trio.speech.resources import Resources

MAX_CONFIGURATION_BYTES = 256 * 1024
MAX_LUIS_KEY = 200
LUIS_RECORD = "luisKeys"


class DataKeySource(Protocol):
    async def data_key(self, resource: SpeechResource) -> DataKey: ...


@dataclass(frozen=True, slots=True)
class OpenedApplication:
    """An application with its configuration in clear for a caller who may read the
    resource's secrets; None (not decrypted at all) for one who may only read metadata."""

    record: Application
    configuration_json: str | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class SealedRecord:
    """A record as the database holds it: sealed, with the version bound into it."""

    sealed: bytes
    version: int


@dataclass(frozen=True, slots=True)
class LuisKeys:
    authoring_key: str = field(repr=False)
    prediction_key: str = field(repr=False)
    update_time: datetime | None = None


def configuration(field_name: str, text: str) -> bytes:
    """Application configuration: JSON (an object), at most 256 KiB."""
    raw = text.encode()
    if not raw:
        raise invalid_field(field_name, Reason.FIELD_REQUIRED, "is required")
    if len(raw) > MAX_CONFIGURATION_BYTES:
        raise invalid_field(
            field_name, Reason.CONFIGURATION_TOO_LARGE, f"must be at most {MAX_CONFIGURATION_BYTES} bytes"
        )
    try:
        parsed = json_input.loads(text)
    except json_input.JsonTooDeep:
        raise invalid_field(
            field_name, Reason.CONFIGURATION_NOT_JSON, f"must be JSON nested at most {json_input.MAX_DEPTH} levels deep"
        ) from None
    except ValueError:
        raise invalid_field(field_name, Reason.CONFIGURATION_NOT_JSON, "must be JSON") from None
    if not isinstance(parsed, dict):
        raise invalid_field(field_name, Reason.CONFIGURATION_NOT_JSON, "must be a JSON object")
    return raw


MAX_VERSION = 2**63 - 1
"""The largest version either engine stores (a signed 64-bit integer): 19 nines is more."""


def parse_etag(text: str) -> int:
    digits = text[1:-1]
    if not (len(text) <= 21 and text[:1] == text[-1:] == '"' and digits.isascii() and digits.isdigit()) or (
        int(digits) > MAX_VERSION
    ):
        raise invalid_field("etag", Reason.FIELD_INVALID, "is not an etag this service issued")
    return int(digits)


class Data:
    """Applications and LUIS keys of the resources."""

    def __init__(
        self, resources: Resources, keys: DataKeySource, clock: Clock, random: RandomBytes = os.urandom
    ) -> None:
        self._resources = resources
        self._store = resources.store
        self._keys = keys
        self._clock = clock
        self._random = random
        self._reads = ReadCache(lambda: self._store.generation)

    async def _resource(self, caller: VerifiedToken, resource_id: str, access: Access) -> SpeechResource:
        resource = await self._resources.get_resource(parse_resource_id("parent", resource_id))
        await self._resources.require_on(caller, resource, access)
        return resource

    async def _open(self, resource: SpeechResource, sealed: bytes, record_id: str, version: int) -> bytes:
        key = await self._keys.data_key(resource)
        try:
            return open_sealed(key, sealed, record_binding(resource.uid, record_id, version))
        except CannotDecrypt:
            raise FailedPrecondition(
                Reason.DATA_UNREADABLE,
                f"record {record_id} of {resource.resource_id} does not decrypt with the resource's data key",
                metadata={"record": record_id},
            ) from None

    async def _seal(self, resource: SpeechResource, plaintext: bytes, record_id: str, version: int) -> bytes:
        key = await self._keys.data_key(resource)
        return seal(key, plaintext, record_binding(resource.uid, record_id, version), self._random)

    # --- applications -----------------------------------------------------------------

    async def create_application(
        self, caller: VerifiedToken, resource_id: str, name: str, config_json: str
    ) -> OpenedApplication:
        name = display_name("application.display_name", name)
        raw = configuration("application.configuration_json", config_json)
        resource = await self._resource(caller, resource_id, Access.WRITE)
        app_id = str(uuid.UUID(bytes=self._random(16), version=4))
        now = self._clock.now()
        sealed = await self._seal(resource, raw, app_id, 1)
        record = Application(resource.resource_id, app_id, name, 1, sealed, now, now)
        async with self._store.unit_of_work() as uow:
            await uow.insert_application(resource.uid, record)
        return OpenedApplication(record, config_json)

    async def _application(self, resource: SpeechResource, app_id: str) -> Application:
        app_id = require_uuid("application_id", app_id)
        found = await self._reads.get(
            ("application", resource.uid, app_id), lambda: self._store.get_application(resource.uid, app_id)
        )
        if found is None:
            raise NotFound(
                Reason.APPLICATION_NOT_FOUND, f"application {app_id} does not exist in {resource.resource_id}"
            )
        return found

    async def get_application(self, caller: VerifiedToken, resource_id: str, app_id: str) -> OpenedApplication:
        resource = await self._resource(caller, resource_id, Access.READ)
        record = await self._application(resource, app_id)
        return await self._opened(resource, record, await self._reads_secrets(caller, resource))

    async def list_applications(
        self, caller: VerifiedToken, resource_id: str, *, after: int, limit: int
    ) -> list[tuple[int, OpenedApplication]]:
        resource = await self._resource(caller, resource_id, Access.READ)
        secrets = await self._reads_secrets(caller, resource)
        found = []
        for seq, record in await self._store.list_applications(resource.uid, after=after, limit=limit):
            found.append((seq, await self._opened(resource, record, secrets)))
        return found

    async def _reads_secrets(self, caller: VerifiedToken, resource: SpeechResource) -> bool:
        """Whether the caller may read the resource's secrets: Contributor or Owner. A
        Reader sees metadata only (on the real platform, listing keys is an action the
        Reader role lacks)."""
        return await self._resources.authorizer.allowed(caller.object_id, resource.resource_id, Access.READ_SECRETS)

    async def _opened(self, resource: SpeechResource, record: Application, secrets: bool) -> OpenedApplication:
        if not secrets:
            return OpenedApplication(record, None)  # not decrypted: no data key is touched
        plain = await self._open(resource, record.sealed_configuration, record.application_id, record.version)
        return OpenedApplication(record, plain.decode())

    async def update_application(
        self, caller: VerifiedToken, resource_id: str, app_id: str, etag: str, name: str | None, config_json: str | None
    ) -> OpenedApplication:
        """Change the display name, the configuration, or both (None: unchanged, as the update
        mask leaves it); the configuration is sealed again either way, bound to the new version."""
        expected = parse_etag(etag) if etag else None
        if expected is None:
            raise invalid_field("application.etag", Reason.FIELD_REQUIRED, "send the etag of the version you read")
        checked_name = display_name("application.display_name", name) if name is not None else None
        raw = configuration("application.configuration_json", config_json) if config_json is not None else None
        resource = await self._resource(caller, resource_id, Access.WRITE)
        current = await self._application(resource, app_id)
        if current.version != expected:
            raise self._stale(current)
        name = checked_name if checked_name is not None else current.display_name
        if raw is None:
            raw = await self._open(resource, current.sealed_configuration, current.application_id, current.version)
            config_json = raw.decode()
        version = expected + 1
        sealed = await self._seal(resource, raw, current.application_id, version)
        updated = replace(current, display_name=name, version=version, sealed_configuration=sealed,
                          update_time=self._clock.now())  # fmt: skip
        async with self._store.unit_of_work() as uow:
            if not await uow.update_application(resource.uid, updated, expected):
                raise self._stale(current)
        return OpenedApplication(updated, config_json)

    @staticmethod
    def _stale(current: Application) -> Aborted:
        return Aborted(
            Reason.ETAG_MISMATCH,
            "the application changed since it was read; read it again and reapply the change",
            metadata={"application_id": current.application_id},
        )

    async def delete_application(self, caller: VerifiedToken, resource_id: str, app_id: str, etag: str) -> None:
        expected = parse_etag(etag) if etag else None
        resource = await self._resource(caller, resource_id, Access.WRITE)
        current = await self._application(resource, app_id)
        async with self._store.unit_of_work() as uow:
            if not await uow.delete_application(resource.uid, current.application_id, expected):
                raise self._stale(current)

    # --- LUIS keys --------------------------------------------------------------------

    async def set_luis_keys(self, caller: VerifiedToken, resource_id: str, authoring: str, prediction: str) -> LuisKeys:
        for name, value in (("luis_keys.authoring_key", authoring), ("luis_keys.prediction_key", prediction)):
            display_name(name, value, limit=MAX_LUIS_KEY)
        resource = await self._resource(caller, resource_id, Access.WRITE)
        existing = await self._store.get_luis_keys(resource.uid)
        version = existing.version + 1 if existing else 1
        plain = json.dumps({"authoring": authoring, "prediction": prediction}).encode()
        sealed = await self._seal(resource, plain, LUIS_RECORD, version)
        now = self._clock.now()
        async with self._store.unit_of_work() as uow:
            await uow.put_luis_keys(resource.uid, SealedLuisKeys(resource.resource_id, version, sealed, now))
        return LuisKeys(authoring, prediction, now)

    async def get_luis_keys(self, caller: VerifiedToken, resource_id: str) -> LuisKeys:
        resource = await self._resource(caller, resource_id, Access.READ_SECRETS)
        stored = await self._store.get_luis_keys(resource.uid)
        if stored is None:
            raise NotFound(Reason.LUIS_KEYS_NOT_SET, f"{resource.resource_id} has no LUIS keys yet; set them first")
        data = json.loads(await self._open(resource, stored.sealed, LUIS_RECORD, stored.version))
        return LuisKeys(data["authoring"], data["prediction"], stored.update_time)

    # --- at rest ----------------------------------------------------------------------

    async def sealed_record(self, caller: VerifiedToken, resource_id: str, app_id: str | None) -> SealedRecord:
        """An application's configuration (`app_id`), or with None the LUIS keys, as stored:
        sealed, and not opened for this (no data key is touched). The platform operator's
        only, to show what is at rest; to anyone else it is refused, whoever owns the data."""
        if OPERATOR_ROLE not in caller.roles:
            raise operator_required("reads records as stored")
        resource = await self._resources.get_resource(parse_resource_id("name", resource_id))
        if app_id is not None:
            app = await self._application(resource, app_id)
            return SealedRecord(app.sealed_configuration, app.version)
        stored = await self._store.get_luis_keys(resource.uid)
        if stored is None:
            raise NotFound(Reason.LUIS_KEYS_NOT_SET, f"{resource.resource_id} has no LUIS keys yet; set them first")
        return SealedRecord(stored.sealed, stored.version)
