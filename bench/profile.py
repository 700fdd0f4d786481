"""Where a path's time goes: load one scenario against `cmk up` while py-spy samples the trio,
then summarise the samples of whichever thread holds the GIL per thread and per function (inclusive and self) into
bench/profiles/<scenario>.txt. `python3 dev.py profile unwrap`; py-spy comes with the dev
install and needs permission to trace the trio (root, or ptrace_scope 0)."""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import read_operator, read_speech_platform, start_trio  # noqa: E402
from cmk_trio.cli.common import State  # noqa: E402
from cmk_trio.loadgen.runner import run_closed  # noqa: E402
from cmk_trio.loadgen.scenarios import SCENARIOS, prepare, scenario  # noqa: E402

TOP = 25
COMMON = ("<module>", "main (", "Context.invoke", "Command.", "Group.invoke", "new_func", "run (", "Runner.run",
          "up (services/cli")  # fmt: skip
"""Frames every sample of the loop thread has (the start-up chain): left out of the tables."""


def summarise(raw: Path, title: str) -> str:
    """A text report of py-spy's raw (collapsed stack) output."""
    threads: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames, n = stack.split(";"), int(count)
        total += n
        threads[frames[0]] += n
        own[frames[-1]] += n
        for frame in set(frames[1:]):
            if not frame.startswith(COMMON):
                inclusive[frame] += n
    out = [
        title,
        "",
        f"{total} samples of the thread holding the GIL (Python's one lock: a thread waiting, or in C",
        "code that released it, such as an RSA decrypt, is not counted)",
        "",
        "by thread:",
    ]
    out += [f"  {n:6} {100 * n / total:5.1f} %  {name}" for name, n in threads.most_common()]
    out += ["", f"top {TOP} functions including what they call:"]
    out += [f"  {n:6} {100 * n / total:5.1f} %  {name}" for name, n in inclusive.most_common(TOP)]
    out += ["", f"top {TOP} functions by their own time:"]
    out += [f"  {n:6} {100 * n / total:5.1f} %  {name}" for name, n in own.most_common(TOP)]
    return "\n".join(out) + "\n"


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=SCENARIOS)
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to sample")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=int, default=100, help="samples per second")
    args = parser.parse_args()
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy is None:
        print("py-spy is not installed: pip install py-spy (the dev install has it)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        process, banner = start_trio(Path(tmp))
        try:
            prepared = await prepare(
                banner["services"], read_operator(Path(tmp)), State("json", None, None).dial,
                read_speech_platform(Path(tmp)),
            )  # fmt: skip
            try:
                load = asyncio.create_task(
                    run_closed(scenario(args.scenario, prepared), scenario=args.scenario,
                               concurrency=args.concurrency, duration=args.seconds + 4, requests=None, warmup=2)
                )  # fmt: skip
                await asyncio.sleep(3)
                raw = Path(tmp) / "profile.raw"
                started = time.perf_counter()
                sampler = await asyncio.create_subprocess_exec(
                    spy, "record", "-p", str(process.pid), "-d", str(int(args.seconds)), "-r", str(args.rate),
                    "-f", "raw", "-o", str(raw), "--threads", "--gil", stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.PIPE,
                )  # fmt: skip
                _, err = await sampler.communicate()
                sampled = time.perf_counter() - started
                result = await load
            finally:
                await prepared.close()
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=20)
        if sampler.returncode != 0 or not raw.exists():
            print(f"py-spy failed: {err.decode(errors='replace').strip()}", file=sys.stderr)
            return 1
        title = (f"{args.scenario}: {result.throughput:,.0f}/s under py-spy at {args.rate} Hz for {sampled:.0f} s, "
                 f"{args.concurrency} in flight (sampling slows the trio; the proportions are what count)")  # fmt: skip
        report = summarise(raw, title)
    out = ROOT / "bench" / "profiles" / f"{args.scenario}.txt"
    out.parent.mkdir(exist_ok=True)
    out.write_text(report)
    print(report)
    print(f"written to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
