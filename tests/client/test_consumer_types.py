"""What a project that calls us gets from its type checker: `mypy --strict` on a small
consumer of SyncCmkClient and CmkClient finds each planted mistake (a misspelt method, an
unknown keyword, a str where bytes go, a result used as what it is not), and nothing in the
same code written right. The package is checked as it is installed in this environment."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

# Each step twice: written right, and with one mistake. The two consumer files differ in
# these lines only, so an error in the one with mistakes is the mistake's, and the right
# one shows that nothing around it is an error.
SYNC_STEPS = [
    ('cmk = SyncCmkClient.connect("127.0.0.1:50051", keyvault="127.0.0.1:50052", token="t", timeout=3)',
     'cmk = SyncCmkClient.connect("127.0.0.1:50051", keyvault="127.0.0.1:50052", token="t", timout=3)'),
    ('cmk.vault.wrap(key_id, b"k" * 32)',
     'cmk.vault.wrapp(key_id, b"k" * 32)'),
    ('cmk.vault.wrap(key_id, b"k" * 32)',
     'cmk.vault.wrap(key_id, "k" * 32)'),
    ('ciphertext: bytes = cmk.vault.wrap(key_id, b"k" * 32).ciphertext',
     'ciphertext: str = cmk.vault.wrap(key_id, b"k" * 32).ciphertext'),
    ('cmk.vault.create_vault("contoso-cmk", "sub", "rg", "westeurope", purge_protection=True)',
     'cmk.vault.create_vault("contoso-cmk", "sub", "rg", "westeurope", purge_protecton=True)'),
    ('last: int = next(cmk.identity.watch_events()).sequence',
     'last: int = next(cmk.identity.watch_events()).sequance'),
    ('cmk.speech.create_application(resource, "Lights", \'{"commands": []}\')',
     'cmk.speech.create_application(resource, "Lights", {"commands": []})'),
]  # fmt: skip
ASYNC_STEPS = [
    ('cmk = CmkClient.connect("127.0.0.1:50051", keyvault="127.0.0.1:50052", token="t", timeout=3)',
     'cmk = CmkClient.connect("127.0.0.1:50051", keyvault="127.0.0.1:50052", token="t", timout=3)'),
    ('await cmk.vault.wrap(key_id, b"k" * 32)',
     'await cmk.vault.wrapp(key_id, b"k" * 32)'),
    ('await cmk.vault.wrap(key_id, b"k" * 32)',
     'await cmk.vault.wrap(key_id, "k" * 32)'),
    ('ciphertext: bytes = (await cmk.vault.wrap(key_id, b"k" * 32)).ciphertext',
     'ciphertext: str = (await cmk.vault.wrap(key_id, b"k" * 32)).ciphertext'),
    ('wrapped = (await cmk.vault.wrap(key_id, b"k" * 32)).ciphertext',
     'wrapped = cmk.vault.wrap(key_id, b"k" * 32).ciphertext'),  # the await forgotten
    ('async for event in cmk.identity.watch_events(): print(event.sequence)',
     'for event in cmk.identity.watch_events(): print(event.sequence)'),
]  # fmt: skip

CONSUMER = """\
from cmk_trio.client import CmkClient, SyncCmkClient


def script(key_id: str, resource: str) -> None:
{sync}


async def service(key_id: str) -> None:
{async_}
"""


def _consumer(mistakes: bool) -> tuple[str, set[int]]:
    """The consumer's source, and the lines of its mistakes."""
    text = CONSUMER.format(
        sync="\n".join(f"    {(step[1] if mistakes else step[0])}" for step in SYNC_STEPS),
        async_="\n".join(f"    {(step[1] if mistakes else step[0])}" for step in ASYNC_STEPS),
    )
    lines = text.splitlines()
    planted = {
        n
        for n, line in enumerate(lines, 1)
        for right, wrong in (*SYNC_STEPS, *ASYNC_STEPS)
        if mistakes and line.strip() == wrong and right != wrong
    }
    return text, planted


def _package_roots() -> list[str]:
    """Where this environment's cmk_trio lives, for mypy_path: the folders holding each of
    the namespace package's portions that the client uses. An editable install (pip install
    -e, as dev.py makes) finds them through an import hook, which mypy cannot follow; a wheel
    installed in site-packages mypy finds by itself (each portion ships py.typed), and
    site-packages must not be in mypy_path."""
    importlib.import_module("cmk_trio.client.front")
    site = {Path(sysconfig.get_path(k)).resolve() for k in ("purelib", "platlib")}
    roots = {
        Path(module.__file__).resolve().parents[2]
        for name, module in list(sys.modules.items())
        if name.startswith("cmk_trio.") and name.count(".") == 1 and module.__file__
    }
    return sorted(str(r) for r in roots - site)


# A cold mypy run (no cache) over the client and what it imports, the protobuf and grpc stubs:
# about 3 seconds here; the room is for a machine busy with other work.
@pytest.mark.timeout(120)
def test_mypy_finds_the_mistakes_a_caller_makes_with_either_client(tmp_path: Path) -> None:
    (tmp_path / "right.py").write_text(_consumer(mistakes=False)[0])
    wrong, planted = _consumer(mistakes=True)
    (tmp_path / "wrong.py").write_text(wrong)
    assert len(planted) == len(SYNC_STEPS) + len(ASYNC_STEPS)
    (tmp_path / "mypy.ini").write_text(
        "[mypy]\n"
        "strict = True\n"
        f"mypy_path = {', '.join(_package_roots())}\n"
        f"cache_dir = {tmp_path / 'cache'}\n"
        # Our modules are read as a consumer's mypy reads an installed package: for their
        # types, without reporting what is inside them (their own check is dev.py's).
        "[mypy-cmk_trio.*]\n"
        "follow_imports = silent\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "--no-color-output", "--no-error-summary",
         "right.py", "wrong.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=110,
    )  # fmt: skip
    assert done.returncode in {0, 1}, done.stderr + done.stdout
    errors: dict[str, set[int]] = {"right.py": set(), "wrong.py": set()}
    for file, line in re.findall(r"^(\S+?):(\d+): error:", done.stdout, re.M):
        errors.setdefault(file, set()).add(int(line))
    assert errors["right.py"] == set(), done.stdout
    lines = wrong.splitlines()
    missed = {n: lines[n - 1].strip() for n in planted - errors["wrong.py"]}
    assert missed == {}, f"mypy let these through:\n{done.stdout}"
    assert errors == {"right.py": set(), "wrong.py": planted}, done.stdout
