"""The latency-by-percentile curve drawn by `cmk load --plot`."""

from __future__ import annotations

from cmk_trio.loadgen.plot import LAST_NINES, percentile_curve
from cmk_trio.loadgen.runner import Result


def test_the_curve_rises_with_the_percentile_and_ends_at_the_maximum():
    result = Result("t", "closed-loop x1")
    for micros in range(1_000, 101_000, 10):  # 1 ms .. 101 ms, evenly
        result.histogram.record_value(micros)
    xs, ys = percentile_curve(result)
    assert xs == sorted(xs) and ys == sorted(ys)
    assert xs[-1] == LAST_NINES and abs(ys[-1] - 101) < 0.1  # the maximum, at the right edge
    # x = 1 is the 90th percentile: about 91 ms here.
    at_90 = next(y for x, y in zip(xs, ys, strict=True) if x >= 1)
    assert 89 < at_90 < 93
