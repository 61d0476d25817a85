"""Per-stage wall-clock timing: CUDA events on a GPU, perf counters on the CPU."""
from __future__ import annotations

import time

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
