"""The README's parity table claims nothing without a witness: every cell names SDK calls and
the test that makes them, and here each named test exists, runs both ways of naming the hosts,
and makes each call it is named for (in its own source, or in the program it runs: the
asynchronous Python clients' tests/witness/aio_sdks.py, the JavaScript tests/witness/js/
witness.mjs). Fast and offline: it reads the sources, it does not run them."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from tests.keyvault.doors import WAYS
from tests.witness import (
    test_arm_cognitive,
    test_arm_keyvault,
    test_arm_sdks,
    test_js_arm,
    test_js_sdks,
    test_python_sdks,
)

ROOT = Path(__file__).resolve().parents[2]
CELL = re.compile(r"^(?P<calls>(?:`\w+`(?:, )?)+) \(`(?P<test>test_\w+)`\)$")


def rows(marker: str = "parity") -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    table = text.split(f"<!-- {marker} -->\n", 1)[1].split("\n\n", 1)[0]
    lines = [line for line in table.splitlines() if line.startswith("|")][2:]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def evidence(module: object, test: str, program: Path) -> str:
    function = getattr(module, test, None)
    assert function is not None, f"the parity table names {test}, which {module} does not have"
    source = inspect.getsource(function)
    if program.stem in source or module is test_js_sdks:
        source += program.read_text()
    return source


def test_every_claim_names_a_test_that_makes_the_call() -> None:
    found = rows()
    assert len(found) >= 25, "the parity table is missing or was cut short"
    for operation, python, javascript in found:
        for cell, module, program in (
            (python, test_python_sdks, ROOT / "tests" / "witness" / "aio_sdks.py"),
            (javascript, test_js_sdks, ROOT / "tests" / "witness" / "js" / "witness.mjs"),
        ):
            if cell.startswith("("):  # a note, no claim
                continue
            match = CELL.match(cell)
            assert match, f"{operation}: a cell is `call`, `call` (`test_name`), not {cell!r}"
            source = evidence(module, match["test"], program)
            for call in re.findall(r"`(\w+)`", match["calls"]):
                assert re.search(rf"\b{call}\b", source), f"{operation}: {match['test']} never calls {call}"


MANAGEMENT_WITNESSES = (test_arm_sdks, test_arm_keyvault, test_arm_cognitive)
"""Where the management table's tests are (Microsoft's management SDKs for Python)."""


def test_every_management_claim_names_a_test_that_makes_the_call() -> None:
    found = rows("parity-management")
    assert len(found) >= 10, "the management parity table is missing or was cut short"
    arm_script = (ROOT / "tests" / "witness" / "js" / "arm.mjs").read_text()
    for operation, python, javascript in found:
        for cell, witnesses, program in ((python, MANAGEMENT_WITNESSES, ""), (javascript, (test_js_arm,), arm_script)):
            if cell.startswith("("):  # a note, no claim
                continue
            match = CELL.match(cell)
            assert match, f"{operation}: a cell is `call`, `call` (`test_name`), not {cell!r}"
            module = next((m for m in witnesses if hasattr(m, match["test"])), None)
            assert module is not None, f"{operation}: no management witness has {match['test']}"
            test = getattr(module, match["test"])
            parameters = inspect.signature(test).parameters
            assert "doors" in parameters or "way" in parameters, f"{match['test']} does not run both ways"
            source = inspect.getsource(test) + program
            for call in re.findall(r"`(\w+)`", match["calls"]):
                assert re.search(rf"\b{call}\b", source), f"{operation}: {match['test']} never calls {call}"


def test_every_witness_runs_both_ways() -> None:
    assert WAYS == ("explicit", "defaults")
    named = {m["test"] for row in rows() for cell in row[1:] if (m := CELL.match(cell))}
    for test in named:
        module = test_python_sdks if hasattr(test_python_sdks, test) else test_js_sdks
        parameters = inspect.signature(getattr(module, test)).parameters
        assert "doors" in parameters or "way" in parameters, f"{test} does not run both ways"


def test_the_check_finds_a_claim_without_its_call() -> None:
    """Not vacuous: a test named for a call it does not make is caught."""
    source = evidence(test_python_sdks, "test_a_backup_brings_a_purged_key_back_with_the_sdk",
                      ROOT / "tests" / "witness" / "aio_sdks.py")  # fmt: skip
    assert re.search(r"\bbackup_key\b", source) and not re.search(r"\bset_secret\b", source)
