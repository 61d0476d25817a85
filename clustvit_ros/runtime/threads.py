"""How many CPU threads inference uses: a fixed count, or one that follows the rest of the machine's load.

Torch's OpenMP threads wait for each other at the end of every parallel region by spinning. On a
CPU that other processes also use, the kernel deschedules one of them and the others spin through
their time slices waiting for it, so one thread per core runs many times slower beside a busy
process (docs/performance.md, "A shared CPU"). One thread per free core avoids the wait; idle, all
cores are faster. `InferenceThreads` measures, between frames, how much CPU the other processes took on the
cores this process may use, and sets torch's intra-op thread count to the cores they leave free.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch

PROC_STAT = Path("/proc/stat")
PERIOD_S = 0.5
"""How often the load is sampled (it is averaged over this window)."""
FREE_CORE_SLACK = 0.4
"""A core counts as free when the others leave at least 1 - this of it: 0.3 core of a camera driver
leaves 2 cores of 2 in use, 0.8 core of a training job drops inference to 1."""
BUSY_FIELDS = (0, 2, 5, 6, 7)  # user system irq softirq steal (guest time is inside user)
NICE_FIELD = 1  # user time of processes with a positive nice value


class CpuLoad:
    """CPU time that other processes take on the CPUs this process may run on, in cores.

    Reads the per-CPU counters of /proc/stat for the CPUs in this process's affinity set and
    subtracts this process's own CPU time (all its threads, `os.times`). Processes with a positive
    nice value (batch jobs) give way to normal ones within a time slice and are not counted, unless
    this process is niced itself.
    """

    def __init__(self, stat: Path = PROC_STAT):
        self._stat = stat
        self._cpus = {f"cpu{n}" for n in os.sched_getaffinity(0)}
        self._tick = os.sysconf("SC_CLK_TCK")
        self._fields = BUSY_FIELDS + ((NICE_FIELD,) if os.getpriority(os.PRIO_PROCESS, 0) > 0 else ())
        self._last = self._sample()

    @property
    def cores(self) -> int:
        return len(self._cpus)

    def others(self) -> float:
        """Cores the other processes used on average since the previous call (or construction)."""
        busy, own, now = sample = self._sample()
        last_busy, last_own, last_now = self._last
        self._last = sample
        elapsed = now - last_now
        if elapsed <= 0:
            return 0.0
        return max(0.0, ((busy - last_busy) - (own - last_own)) / elapsed)

    def _sample(self) -> tuple[float, float, float]:
        busy = 0
        with self._stat.open() as stat:
            for line in stat:
                name, _, rest = line.partition(" ")
                if name in self._cpus:
                    values = rest.split()
                    busy += sum(int(values[i]) for i in self._fields)
        own = os.times()
        return busy / self._tick, own.user + own.system, time.monotonic()


class InferenceThreads:
    """Sets torch's intra-op thread count before each frame; call `before_frame` on the inference thread.

    `fixed` > 0 pins that many threads (the node's ``threads`` parameter); 0 follows the load: one
    thread per core the other processes leave free (at least 1), re-decided every `period_s`. Where
    the load cannot be read (no /proc), it keeps torch's default.
    """

    def __init__(self, fixed: int = 0, period_s: float = PERIOD_S, load: CpuLoad | None = None):
        self.fixed = fixed
        self._period = period_s
        self._load = None if fixed else load or _cpu_load_or_none()
        self._next = 0.0
        self.current = fixed or (self._load.cores if self._load else 0)  # torch is not touched here

    @property
    def adaptive(self) -> bool:
        return self._load is not None

    def before_frame(self) -> int:
        """Apply the thread count for the next frame and return it."""
        if self._load is None:
            if not self.fixed:
                self.current = torch.get_num_threads()
            elif torch.get_num_threads() != self.fixed:
                torch.set_num_threads(self.fixed)
            return self.current
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self._period
            self.current = threads_for(self._load.cores, self._load.others())
        if torch.get_num_threads() != self.current:
            torch.set_num_threads(self.current)
        return self.current

    def describe(self) -> str:
        """For logs and diagnostics: the count and how it is chosen."""
        how = "fixed" if self.fixed else "following the load" if self.adaptive else "torch's default"
        return f"{self.current} ({how})"


def threads_for(cores: int, others: float) -> int:
    """Threads for inference when other processes use `others` of `cores` cores."""
    return max(1, min(cores, math.floor(cores - others + FREE_CORE_SLACK)))


def _cpu_load_or_none() -> CpuLoad | None:
    try:
        return CpuLoad()
    except (OSError, AttributeError):  # no /proc/stat, or no sched_getaffinity (not Linux)
        return None
