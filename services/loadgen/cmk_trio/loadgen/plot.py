"""The latency-by-percentile plot of a load run, as a PNG: latency against percentile on the
usual HDR scale (50 %, 90 %, 99 %, 99.9 %, ... equally spaced), so the tail is as visible as
the median. matplotlib is an optional dependency (`pip install 'cmk-trio[plot]'`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from cmk_trio.loadgen.runner import Result

# Imports inside functions: matplotlib, an optional dependency (cmk-trio[plot]), when a plot
# is written.

TICKS_PER_HALF_DISTANCE = 5
LAST_NINES = 5
"""The x axis ends at 99.999 %: a run has few samples beyond, and the maximum is plotted there."""


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


def percentile_curve(result: Result) -> tuple[list[float], list[float]]:
    """Points (x, latency ms) with x = log10(1 / (1 - percentile)): 1 at 90 %, 2 at 99 %."""
    xs: list[float] = []
    ys: list[float] = []
    cap = float(LAST_NINES)
    for item in result.histogram.get_percentile_iterator(TICKS_PER_HALF_DISTANCE):
        fraction = item.percentile_level_iterated_to / 100
        x = cap if fraction >= 1 else min(cap, -math.log10(1 - fraction))
        xs.append(x)
        ys.append(result.histogram.get_highest_equivalent_value(item.value_iterated_to) / 1000)
    return xs, ys


def write_percentile_plot(results: Sequence[Result], path: Path, title: str = "") -> None:
    """Write one curve per result to `path` (PNG)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotUnavailable("writing a plot needs matplotlib: pip install 'cmk-trio[plot]'") from None
    figure = Figure(figsize=(8, 4.5), dpi=100)
    FigureCanvasAgg(figure)  # no pyplot: no global state, no display
    axes = figure.add_subplot()
    for result in results:
        xs, ys = percentile_curve(result)
        axes.plot(xs, ys, label=f"{result.scenario} ({result.mode}, {result.throughput:,.0f}/s)")
    ticks = list(range(LAST_NINES + 1))
    axes.set_xticks(ticks, ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"][: len(ticks)])
    axes.set_xlim(0, LAST_NINES)
    axes.set_xlabel("percentile")
    axes.set_ylabel("latency (ms)")
    axes.set_ylim(bottom=0)
    axes.grid(True, alpha=0.3)
    axes.set_title(title or "latency by percentile")
    axes.legend(loc="upper left")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
