"""Per-stage wall-clock timing: CUDA events on a GPU, perf counters on the CPU."""
from __future__ import annotations

import time

import torch


class StageClock:
    """Marks stage boundaries and returns their durations in ms after the last mark.

    On CUDA the marks are events recorded on the current stream, read after one synchronisation at
    the end, so timing adds no extra host-device syncs to the pipeline.
    """

    def __init__(self, device: torch.device):
        self._cuda = device.type == "cuda"
        self._marks: list = []

    def mark(self) -> None:
        if self._cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self._marks.append(event)
        else:
            self._marks.append(time.perf_counter())

    def durations_ms(self) -> list[float]:
        """Milliseconds between consecutive marks (synchronises on CUDA)."""
        marks, self._marks = self._marks, []
        if self._cuda:
            marks[-1].synchronize()
            return [a.elapsed_time(b) for a, b in zip(marks, marks[1:])]
        return [(b - a) * 1e3 for a, b in zip(marks, marks[1:])]
