"""The one percentile every tool reports (p50, p95 of latencies, stamp ages, ...)."""
from __future__ import annotations

import math
from typing import Iterable


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile (q in 0..100) of the finite values; NaN when there are none.

    Linear interpolation between the two nearest ranks: numpy's default method ("linear",
    Hyndman & Fan type 7, spreadsheet PERCENTILE.INC). NaN and infinite values are left out.
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must lie in [0, 100], got {q}")
    ordered = sorted(v for v in values if math.isfinite(v))
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
