"""Private keys at rest and in memory: sealed under the vault service's master key for the
store, bound to the version they belong to, and kept parsed for the versions used last."""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from cmk_trio.keyvault.crypto import KeyMaterial, Sealer, load_private_der
from cmk_trio.keyvault.model import KeyVersion
from cmk_trio.platform import key_names

MATERIAL_CACHE = 4096
"""Parsed private keys kept in memory (each a few kilobytes): the versions used last."""

Slot = tuple[str, str, str]
"""(vault name, key name in lower case, version)."""


class KeyMaterials:
    """Seals private keys for the store, and opens them again, keeping the parsed keys of
    the versions used last (at most MATERIAL_CACHE of them)."""

    def __init__(self, sealer: Sealer, *, dns_suffix: str) -> None:
        self._sealer = sealer
        self._dns_suffix = dns_suffix
        self._parsed: OrderedDict[Slot, KeyMaterial] = OrderedDict()

    def __len__(self) -> int:
        """How many parsed private keys are held."""
        return len(self._parsed)

    def _context(self, slot: Slot) -> str:
        # A sealed key is bound to its version's Key Identifier with the key's name in lower
        # case, so that it opens whatever case a caller names the key in, and nowhere else.
        vault, key, version = slot
        return key_names.key_id(vault, key, version, self._dns_suffix)

    def seal(self, vault: str, key: str, version: str, material: KeyMaterial) -> bytes:
        """The private key of a new version, sealed for the store."""
        return self._sealer.seal(material.private_der(), self._context((vault, key.lower(), version)))

    async def open(self, version: KeyVersion) -> KeyMaterial:
        """The parsed private key of a version, opened off the event loop the first time, so
        that a burst of cold keys does not stall the calls of warm ones."""
        slot = (version.vault_name, version.key_name.lower(), version.version)
        cached = self._parsed.get(slot)
        if cached is not None:
            self._parsed.move_to_end(slot)
            return cached
        material = await asyncio.to_thread(self._open, version.sealed_private_key, self._context(slot))
        self._keep(slot, material)
        return material

    def _open(self, sealed: bytes, context: str) -> KeyMaterial:
        return load_private_der(self._sealer.open(sealed, context), validated=True)

    def keep(self, vault: str, key: str, version: str, material: KeyMaterial) -> None:
        """Hold the parsed key of a version just stored, so its first use need not open it."""
        self._keep((vault, key.lower(), version), material)

    def _keep(self, slot: Slot, material: KeyMaterial) -> None:
        self._parsed[slot] = material
        while len(self._parsed) > MATERIAL_CACHE:
            self._parsed.popitem(last=False)

    def forget(self, vault: str, key: str | None = None) -> None:
        """Drop the parsed keys of one key, or of a whole (purged) vault."""
        for slot in [s for s in self._parsed if s[0] == vault and (key is None or s[1] == key.lower())]:
            del self._parsed[slot]
