"""The container suite's fixtures: the engine made ready once per run (tools, socket, images;
see engine.py), and the figures the tests measured, written to RELIABILITY.md's containers
section at the end when CMK_CONTAINER_REPORT names the file (python3 dev.py containers)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.containers import engine
from tests.containers.report import complete, render
from tests.reports import write_section

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).resolve().is_relative_to(HERE):
            item.add_marker(pytest.mark.containers)
            item.add_marker(pytest.mark.timeout(900))


FIGURES: dict[str, Any] = {}


@pytest.fixture(scope="session")
def container_figures() -> dict[str, Any]:
    """What the tests measured, by name; written out when the session ends, if it passed."""
    return FIGURES


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """RELIABILITY.md's containers section, from a run in which every test passed and every
    figure was measured (not from a failed or partial run)."""
    report = os.environ.get("CMK_CONTAINER_REPORT")
    if report and exitstatus == 0 and complete(FIGURES):
        FIGURES["written"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        write_section(Path(report), "containers", render(FIGURES))
    elif report:
        print("\n[containers] RELIABILITY.md left alone: the run failed or did not measure everything")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """What the suite installed or built (captured where it was said)."""
    for message in engine.SAID:
        terminalreporter.write_line(f"[containers] {message}")


@pytest.fixture(scope="session")
def container_engine(container_figures: dict[str, Any]) -> Iterator[None]:
    """podman, its socket, the base images and our image, made ready (installed or built
    where missing) once per run."""
    started = time.monotonic()
    service = engine.prepare()
    container_figures["prepare_s"] = round(time.monotonic() - started, 1)
    container_figures["standins"] = engine.standins()
    try:
        yield
    finally:
        service.stop()
