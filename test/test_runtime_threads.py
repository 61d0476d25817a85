"""The inference thread count: fixed by the `threads` parameter, or following the machine's load."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from clustvit_ros.runtime.threads import CpuLoad, InferenceThreads, threads_for

AFFINITY = sorted(os.sched_getaffinity(0))


class FakeLoad:
    """What the other processes use, as a test sets it."""

    def __init__(self, cores: int, others: float = 0.0):
        self.cores, self.value = cores, others

    def others(self) -> float:
        return self.value


@pytest.fixture(autouse=True)
def restore_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("cores, others, expected", [
    (2, 0.0, 2), (2, 0.3, 2),      # idle, or a camera driver's share: every core
    (2, 0.8, 1), (2, 1.0, 1),      # one busy process: the free core
    (2, 2.0, 1), (2, 5.0, 1),      # more busy processes than cores: never fewer than 1
    (8, 3.0, 5), (8, 0.0, 8), (1, 0.0, 1),
])
def test_one_thread_per_core_the_others_leave_free(cores, others, expected):
    assert threads_for(cores, others) == expected


def test_follows_the_load_between_frames_and_sets_torch():
    load = FakeLoad(cores=2)
    threads = InferenceThreads(0, period_s=0.0, load=load)
    assert threads.before_frame() == 2 and torch.get_num_threads() == 2
    load.value = 1.0  # a training job starts
    assert threads.before_frame() == 1 and torch.get_num_threads() == 1
    load.value = 0.1  # and ends
    assert threads.before_frame() == 2 and torch.get_num_threads() == 2
    assert threads.describe() == "2 (following the load)"


def test_decides_at_most_once_per_period():
    load = FakeLoad(cores=2)
    threads = InferenceThreads(0, period_s=3600.0, load=load)
    assert threads.before_frame() == 2
    load.value = 2.0
    assert threads.before_frame() == 2  # a frame's burst of load does not flip the count


def test_a_fixed_count_ignores_the_load():
    threads = InferenceThreads(1, period_s=0.0, load=FakeLoad(cores=2))
    torch.set_num_threads(2)  # e.g. something else in the process changed it
    assert threads.before_frame() == 1 and torch.get_num_threads() == 1
    assert threads.describe() == "1 (fixed)" and not threads.adaptive


def write_stat(path: Path, busy_ticks: int, niced_ticks: int = 0) -> None:
    """A /proc/stat whose CPUs in our affinity set were busy `busy_ticks` each (and `niced_ticks` in
    niced processes), plus one CPU we may not use."""
    lines = [f"cpu  {busy_ticks * 4} 0 0 0 0 0 0 0 0 0"]
    lines += [f"cpu{n} {busy_ticks} {niced_ticks} 0 100000 0 0 0 0 0 0" for n in AFFINITY]
    lines.append(f"cpu{max(AFFINITY) + 1} 999999 0 0 0 0 0 0 0 0 0")  # outside the affinity set
    lines.append("intr 12345")
    path.write_text("\n".join(lines) + "\n")


def test_cpu_load_counts_other_processes_on_our_cpus_only(tmp_path):
    stat = tmp_path / "stat"
    write_stat(stat, 1000)
    load = CpuLoad(stat)
    assert load.cores == len(AFFINITY)
    started = time.monotonic()
    time.sleep(0.2)
    write_stat(stat, 1000 + os.sysconf("SC_CLK_TCK"))  # each of our CPUs busy for one more second
    others = load.others()
    elapsed = time.monotonic() - started
    # len(AFFINITY) busy seconds in `elapsed`, less our own few ms; the foreign CPU's 9999 s must not count
    assert (len(AFFINITY) - 0.1) / elapsed < others <= len(AFFINITY) / 0.2


def test_niced_batch_jobs_are_not_counted(tmp_path):
    stat = tmp_path / "stat"
    write_stat(stat, 1000, niced_ticks=0)
    load = CpuLoad(stat)
    time.sleep(0.1)
    write_stat(stat, 1000, niced_ticks=10 * os.sysconf("SC_CLK_TCK"))  # they give way within a slice
    assert load.others() < 0.5


def test_a_busy_process_is_seen_on_the_real_machine():
    """Real /proc/stat: a busy loop in a child process shows up as about one core of others' load."""
    load = CpuLoad()
    load.others()
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1.5)
        others = load.others()
    finally:
        child.kill()
        child.wait()
    assert others > 0.6


def test_fixed_threads_are_applied_in_a_fresh_process():
    """The first thread to use torch (the node's inference thread) gets the count before its first op."""
    code = textwrap.dedent("""
        import threading, torch
        from clustvit_ros.runtime.threads import InferenceThreads
        seen = []
        def work():
            InferenceThreads(1).before_frame()
            torch.ones(64, 64) @ torch.ones(64, 64)
            seen.append(torch.get_num_threads())
        t = threading.Thread(target=work); t.start(); t.join()
        print(seen[0])
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"
