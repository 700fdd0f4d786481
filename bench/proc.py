"""What the processes of a benchmark cost, read from /proc (Linux): resident memory, and CPU
time split between a process's main thread (the event loop, where every call's Python
runs) and its other threads (crypto off the loop, SQLite, gRPC's C core)."""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cmk_trio.loadgen.runner import run_closed

TICKS = os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def _ticks(stat: Path) -> int:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def thread_ticks(pid: int) -> tuple[int, int]:
    """(main thread, all other threads) CPU ticks of a process so far."""
    main = other = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            ticks = _ticks(task / "stat")
        except OSError:  # the thread ended meanwhile
            continue
        if task.name == str(pid):
            main = ticks
        else:
            other += ticks
    return main, other


def machine_ticks() -> tuple[int, int]:
    """(busy, idle) ticks of the whole machine so far."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values[:8]) - idle, idle


@dataclass
class CpuWatch:
    """CPU used by a server process and by this (load-generating) process between start()
    and stop(), in cores (1.0 = one core busy the whole time), and the machine's idle share."""

    server_pid: int
    _start: tuple[tuple[int, int], int, tuple[int, int]] | None = None

    def start(self) -> None:
        self._start = (thread_ticks(self.server_pid), _ticks(Path(f"/proc/{os.getpid()}/stat")), machine_ticks())

    def stop(self, seconds: float) -> dict[str, float]:
        if self._start is None:
            raise RuntimeError("start() first")
        (main0, other0), load0, (busy0, idle0) = self._start
        main1, other1 = thread_ticks(self.server_pid)
        load1 = _ticks(Path(f"/proc/{os.getpid()}/stat"))
        busy1, idle1 = machine_ticks()

        def cores(ticks: int) -> float:
            return round(ticks / TICKS / seconds, 2)

        total = (busy1 - busy0) + (idle1 - idle0)
        return {
            "server_loop_cores": cores(main1 - main0),
            "server_other_threads_cores": cores(other1 - other0),
            "load_generator_cores": cores(load1 - load0),
            "machine_idle_pct": round((idle1 - idle0) / total * 100, 1) if total else 0.0,
        }


async def measured_path(
    request: Callable[[], Awaitable[object]], name: str, pid: int, seconds: float, concurrency: int, warmup: float = 1
) -> dict[str, Any]:
    """A closed-loop run of `request` with the CPU the process `pid` spent on it, per call."""
    watch, started = CpuWatch(pid), time.perf_counter()
    watch.start()
    run = await run_closed(request, scenario=name, concurrency=concurrency, duration=seconds, requests=None,
                           warmup=warmup)  # fmt: skip
    cpu = watch.stop(time.perf_counter() - started)
    summary = run.summary()
    calls = summary["throughput_per_s"] * seconds
    trio_cores = cpu["server_loop_cores"] + cpu["server_other_threads_cores"]
    return summary | {"cpu": cpu, "trio_cpu_ms_per_call": round(trio_cores * seconds * 1000 / calls, 3) if calls else 0}
