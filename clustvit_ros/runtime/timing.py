"""Per-stage wall-clock timing: CUDA events on a GPU, perf counters on the CPU."""
from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Callable

import torch


class StageClock:
    """Marks stage boundaries and returns their durations in ms after the last mark.

    On CUDA the marks are events recorded on the current stream *of the clock's device* (on cuda:N,
    N > 0, the current device may be another one, whose stream would not see this device's work),
    read after one synchronisation at the end, so timing adds no extra host-device syncs.
    """

    def __init__(self, device: torch.device):
        self._device = device if device.type == "cuda" else None
        self._marks: list = []

    def mark(self) -> None:
        if self._device is not None:
            event = torch.cuda.Event(enable_timing=True)
            event.record(torch.cuda.current_stream(self._device))
            self._marks.append(event)
        else:
            self._marks.append(time.perf_counter())

    def durations_ms(self) -> list[float]:
        """Milliseconds between consecutive marks (synchronises on CUDA)."""
        marks, self._marks = self._marks, []
        if self._device is not None:
            marks[-1].synchronize()
            return [a.elapsed_time(b) for a, b in zip(marks, marks[1:])]
        return [(b - a) * 1e3 for a, b in zip(marks, marks[1:])]


def host_syncs(run: Callable[[], object]) -> list[str]:
    """``file:line`` of each host-device synchronisation torch reports while `run()` runs (CUDA's
    sync debug mode); run it once before, so lazy initialisation is not counted."""
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return [f"{Path(w.filename).name}:{w.lineno}" for w in caught if "synchronizing" in str(w.message)]
