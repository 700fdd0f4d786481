"""Key rotation policies, carried out by the service on its own clock: a Rotate action makes
a new version some time after the newest was created (or before it expires), a Notify
action announces the coming expiry on the event stream."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from cmk_trio.keyvault.callers import Recorder
from cmk_trio.keyvault.key_attributes import KeyAttributes
from cmk_trio.keyvault.keys import Keys
from cmk_trio.keyvault.model import EventType, KeyPermission
from cmk_trio.platform.key_names import KeyRef
from cmk_trio.rpckit.errors import invalid_field
from cmk_trio.rpckit.reasons import Reason
from cmk_trio.rpckit.tokens import VerifiedToken

DURATION = re.compile(r"P(\d{1,5})([DMY])")
UNIT_DAYS = {"D": 1, "M": 30, "Y": 365}
MIN_DURATION = timedelta(days=7)
ROTATE, NOTIFY = "Rotate", "Notify"


def parse_duration(field: str, text: str) -> timedelta:
    """An ISO 8601 duration in days, months or years ("P90D", "P3M", "P1Y"), at least 7 days."""
    match = DURATION.fullmatch(text)
    if match is None:
        raise invalid_field(
            field, Reason.ROTATION_POLICY_INVALID, "must be an ISO 8601 duration such as P90D, P3M or P1Y"
        )
    days = int(match.group(1)) * UNIT_DAYS[match.group(2)]
    if timedelta(days=days) < MIN_DURATION:
        raise invalid_field(field, Reason.ROTATION_POLICY_INVALID, "must be at least 7 days (P7D)")
    return timedelta(days=days)


@dataclass(frozen=True, slots=True)
class LifetimeAction:
    """One action and its trigger; exactly one of the two triggers is set."""

    action: str
    time_after_create: str = ""
    time_before_expiry: str = ""

    def fires(self, created: datetime, expires: datetime | None, now: datetime) -> bool:
        if self.time_after_create:
            return now >= created + parse_duration("time_after_create", self.time_after_create)
        if self.time_before_expiry and expires is not None:
            return now >= expires - parse_duration("time_before_expiry", self.time_before_expiry)
        return False


@dataclass(frozen=True, slots=True)
class RotationPolicy:
    actions: tuple[LifetimeAction, ...] = ()
    expiry_time: str = ""
    update_time: datetime | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "actions": [
                    {
                        "action": a.action,
                        "timeAfterCreate": a.time_after_create,
                        "timeBeforeExpiry": a.time_before_expiry,
                    }
                    for a in self.actions
                ],
                "expiryTime": self.expiry_time,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str, update_time: datetime) -> RotationPolicy:
        data = json.loads(text)
        actions = tuple(
            LifetimeAction(a["action"], a["timeAfterCreate"], a["timeBeforeExpiry"]) for a in data["actions"]
        )
        return cls(actions, data["expiryTime"], update_time)

    def validated(self) -> RotationPolicy:
        kinds = [a.action for a in self.actions]
        if any(k not in (ROTATE, NOTIFY) for k in kinds) or len(kinds) != len(set(kinds)):
            raise invalid_field(
                "policy.lifetime_actions", Reason.ROTATION_POLICY_INVALID, "at most one Rotate and one Notify action"
            )
        for i, a in enumerate(self.actions):
            if bool(a.time_after_create) == bool(a.time_before_expiry):
                raise invalid_field(
                    f"policy.lifetime_actions[{i}]", Reason.ROTATION_POLICY_INVALID,
                    "set exactly one trigger: time_after_create or time_before_expiry",
                )  # fmt: skip
            parse_duration(f"policy.lifetime_actions[{i}]", a.time_after_create or a.time_before_expiry)
            if a.time_before_expiry and not self.expiry_time and a.action == ROTATE:
                raise invalid_field(
                    "policy.expiry_time", Reason.ROTATION_POLICY_INVALID,
                    "a trigger before expiry needs versions that expire: set expiry_time",
                )  # fmt: skip
        if self.expiry_time:
            parse_duration("policy.expiry_time", self.expiry_time)
        return self


DEFAULT_POLICY = RotationPolicy((LifetimeAction(NOTIFY, "", "P30D"),))
"""What a key that never had a policy shows, as Key Vault shows it: notify 30 days before expiry."""


class Rotation:
    """Reads and writes rotation policies, and applies them when `run_due` is called."""

    def __init__(self, keys: Keys, recorder: Recorder) -> None:
        self._keys = keys
        self._store = keys.store
        self._recorder = recorder

    async def get(self, caller: VerifiedToken, ref: KeyRef) -> RotationPolicy:
        vault = await self._keys.checks.authorize(caller, ref.vault_name, KeyPermission.GET_ROTATION_POLICY)
        await self._keys.checks.live_key(vault, ref.key_name)
        return await self._load(vault.vault_name, ref.key_name) or DEFAULT_POLICY

    async def set(self, caller: VerifiedToken, ref: KeyRef, policy: RotationPolicy) -> RotationPolicy:
        policy.validated()
        vault = await self._keys.checks.authorize(caller, ref.vault_name, KeyPermission.SET_ROTATION_POLICY)
        key = await self._keys.checks.live_key(vault, ref.key_name)
        now = self._keys.clock.now()
        async with self._store.unit_of_work() as uow:
            await uow.put_rotation_policy(vault.vault_name, key.key_name, policy.to_json(), now)
        return RotationPolicy(policy.actions, policy.expiry_time, now)

    async def _load(self, vault: str, key: str) -> RotationPolicy | None:
        stored = await self._store.get_rotation_policy(vault, key)
        return RotationPolicy.from_json(stored.policy_json, stored.update_time) if stored else None

    async def run_due(self) -> list[tuple[str, str, str]]:
        """Apply every policy whose trigger has fired; returns (vault, key, action) done."""
        done: list[tuple[str, str, str]] = []
        now = self._keys.clock.now()
        for stored in await self._store.live_rotation_policies():
            policy = RotationPolicy.from_json(stored.policy_json, stored.update_time)
            vault = await self._store.get_vault(stored.vault_name)
            latest = await self._store.latest_version(stored.vault_name, stored.key_name)
            if vault is None or latest is None:
                continue
            for action in policy.actions:
                if not action.fires(latest.create_time, latest.expires, now):
                    continue
                if action.action == ROTATE:
                    expiry = parse_duration("expiry_time", policy.expiry_time) if policy.expiry_time else None
                    attributes = KeyAttributes(
                        key_ops=latest.key_ops, tags=latest.tags, expires=now + expiry if expiry else None
                    )
                    async with self._recorder.system_call(
                        "AutoRotateKey", request_id="rotation-policy", vault_name=vault.vault_name,
                        key_name=latest.key_name,
                    ):  # fmt: skip
                        made = await self._keys.rotate_as_service(vault, latest, attributes)
                    if made is not None:  # (None: the replica that held the lease before did it)
                        done.append((vault.vault_name, latest.key_name, ROTATE))
                    break  # the new version restarts every trigger
                if action.action == NOTIFY and stored.notified_version != latest.version:
                    async with self._store.unit_of_work() as uow:
                        await uow.mark_rotation_notified(vault.vault_name, latest.key_name, latest.version)
                        await uow.append_event(EventType.KEY_NEAR_EXPIRY, now,
                            vault_name=vault.vault_name, key_name=latest.key_name, version=latest.version,
                        )  # fmt: skip
                    await self._keys.notifier.notify()
                    done.append((vault.vault_name, latest.key_name, NOTIFY))
        return done
