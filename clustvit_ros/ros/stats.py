"""The /diagnostics status built from what the node measured."""
from __future__ import annotations

import math
import threading
from collections import Counter
from dataclasses import dataclass, field

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from ..runtime.frame import FrameTimes


@dataclass
class _Period:
    """The figures of one /diagnostics period."""

    frames: int = 0
    errors: int = 0
    stamp_ages: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    gflops: list[float] = field(default_factory=list)


class DiagnosticsWindow:
    """What happened since the last /diagnostics message, plus running totals.

    The inference worker adds to it while the executor's timer reads and resets it; one lock
    guards all of it, so every frame and every error lands in exactly one period.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._period = _Period()
        self._processed = 0
        self._errors: Counter[str] = Counter()
        self._last_error = ""

    def add_frame(self, times: FrameTimes, gflops: float) -> None:
        with self._lock:
            self._processed += 1
            period = self._period
            period.frames += 1
            if math.isfinite(times.stamp_age_ms):
                period.stamp_ages.append(times.stamp_age_ms)
            period.latencies.append(times.latency_ms)
            period.gflops.append(gflops)

    def add_error(self, kind: str, text: str) -> None:
        with self._lock:
            self._errors[kind] += 1
            self._period.errors += 1
            self._last_error = text

    def status(self, period_s: float, dropped: int, extra: dict[str, str]) -> DiagnosticStatus:
        """A status for the last `period_s` seconds; starts the next period.

        The level is WARN when that period had bad frames, else OK; the totals stay in the values.
        """
        with self._lock:
            period, self._period = self._period, _Period()
            processed, errors, last_error = self._processed, Counter(self._errors), self._last_error
        rate = period.frames / period_s if period_s > 0 else 0.0
        values = {
            "rate_hz": f"{rate:.2f}",
            "stamp_age_ms_mean": _mean(period.stamp_ages),
            "stamp_age_ms_max": f"{max(period.stamp_ages):.1f}" if period.stamp_ages else "nan",
            "latency_ms_mean": _mean(period.latencies),
            "gflops_mean": _mean(period.gflops),
            "frames_processed": str(processed),
            "frames_dropped": str(dropped),
            "input_errors": str(errors["input"]),
            "processing_errors": str(errors["processing"]),
            "last_error": last_error,
            **extra,
        }
        level, message = DiagnosticStatus.OK, "segmenting"
        if period.errors:
            level, message = DiagnosticStatus.WARN, f"{period.errors} bad frame(s) in the last {period_s:g} s"
        if extra.get("enabled") == "False":
            message = "disabled"
        if extra.get("lifecycle_state", "active") != "active":  # unconfigured or inactive: nothing runs
            message = extra["lifecycle_state"]
        return DiagnosticStatus(level=level, message=message,
                                values=[KeyValue(key=k, value=v) for k, v in values.items()])


def _mean(values: list[float]) -> str:
    return f"{sum(values) / len(values):.2f}" if values else "nan"
