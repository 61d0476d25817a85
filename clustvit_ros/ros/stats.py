"""The /diagnostics status built from what the node measured."""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from ..runtime.frame import FrameTimes


@dataclass
class DiagnosticsWindow:
    """What happened since the last /diagnostics message, plus running totals."""

    processed_total: int = 0
    errors: Counter = field(default_factory=Counter)
    last_error: str = ""
    _frames: int = 0
    _stamp_ages: list = field(default_factory=list)
    _latencies: list = field(default_factory=list)
    _gflops: list = field(default_factory=list)

    def add_frame(self, times: FrameTimes, gflops: float) -> None:
        self.processed_total += 1
        self._frames += 1
        if math.isfinite(times.stamp_age_ms):
            self._stamp_ages.append(times.stamp_age_ms)
        self._latencies.append(times.latency_ms)
        self._gflops.append(gflops)

    def add_error(self, kind: str, text: str) -> None:
        self.errors[kind] += 1
        self.last_error = text

    def status(self, period_s: float, dropped: int, extra: dict[str, str]) -> DiagnosticStatus:
        """A status for the last `period_s` seconds; resets the per-period figures."""
        rate = self._frames / period_s if period_s > 0 else 0.0
        values = {
            "rate_hz": f"{rate:.2f}",
            "stamp_age_ms_mean": _mean(self._stamp_ages),
            "stamp_age_ms_max": f"{max(self._stamp_ages):.1f}" if self._stamp_ages else "nan",
            "latency_ms_mean": _mean(self._latencies),
            "gflops_mean": _mean(self._gflops),
            "frames_processed": str(self.processed_total),
            "frames_dropped": str(dropped),
            "input_errors": str(self.errors["input"]),
            "processing_errors": str(self.errors["processing"]),
            "last_error": self.last_error,
            **extra,
        }
        level, message = DiagnosticStatus.OK, "segmenting"
        if self.errors:
            level, message = DiagnosticStatus.WARN, f"{sum(self.errors.values())} bad frames so far"
        if extra.get("enabled") == "False":
            message = "disabled"
        self._frames, self._stamp_ages, self._latencies, self._gflops = 0, [], [], []
        return DiagnosticStatus(level=level, message=message,
                                values=[KeyValue(key=k, value=v) for k, v in values.items()])


def _mean(values: list) -> str:
    return f"{sum(values) / len(values):.2f}" if values else "nan"
