"""The latency target on the real node over DDS: CamVid frames, the packaged model, and child
processes that burn the node's CPU for a while.

The node and the burners share one CPU, so that the load step is theirs whatever else the machine
runs: three busy loops there leave the node about a quarter of it (less where other work shares the
CPU too: then the node merges all it may and reports the target out of reach). How much faster the
fully merged model is than the dense ViT (the user's budget here) depends on the machine, so both
are measured idle first and the target is set between what each would take on a quarter of the CPU.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import cv2

from clustvit_ros.ros.image_codec import numpy_to_image
from clustvit_ros.runtime.latency_target import MAX_EXTRA_BIAS
from clustvit_ros.runtime.packaged import SAMPLE_FRAMES
from clustvit_ros.runtime.percentile import percentile
from support.node_process import running_node
from support.processes import REPO

CAMERA_HZ = 5.0  # one dense frame on one CPU takes about 0.1 s
FLOOR = (0.0, 0.0)  # the user's budget: the dense ViT, so merging has the most room
CPU = max(os.sched_getaffinity(0))  # the one CPU of the node and the burners
BURNERS = 3
SETTLE_FRAMES = 10  # the controller settles within this many frames of a load step


@dataclass
class Stamped:
    sent: float  # wall-clock time the frame was published
    latency_ms: float
    budget: tuple[float, float]


class Camera:
    """Publishes the packaged CamVid frames at CAMERA_HZ from a thread, stamped with the wall clock."""

    def __init__(self, harness):
        self.harness = harness
        self.frames = [numpy_to_image(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB), "rgb8")
                       for p in sorted((REPO / SAMPLE_FRAMES).glob("*.jpg"))[:8]]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        i = 0
        while not self._stop.wait(1.0 / CAMERA_HZ):
            sec, nsec = divmod(time.time_ns(), 1_000_000_000)
            self.harness.publish(self.frames[i % len(self.frames)], (sec, nsec))
            i += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def _frames(harness, since: float) -> list[Stamped]:
    out = []
    for s in harness.messages("stats"):
        sent = s.header.stamp.sec + s.header.stamp.nanosec * 1e-9
        if sent >= since:
            out.append(Stamped(sent, s.latency_ms, (s.merge_budget, s.merge_bias)))
    return out


def _burners() -> list[subprocess.Popen]:
    """Busy Python loops on the node's CPU, at normal priority, each in a session of its own (with
    the kernel's autogroup scheduling, processes of one session share one slice of the CPU)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True,
                             preexec_fn=lambda: os.sched_setaffinity(0, {CPU})) for _ in range(BURNERS)]


def _idle_p50(harness, seconds: float = 3.0) -> float:
    """The median latency [ms] of the frames sent over the next `seconds`, after one to settle."""
    time.sleep(1.0)
    start = time.time()
    time.sleep(seconds)
    return percentile([f.latency_ms for f in _frames(harness, start)], 50)


def test_busy_cores_raise_the_merging_under_the_target_and_it_comes_back_when_they_go():
    with running_node("merge_budget:=0.0", "diagnostics_period:=0.5", tag="deadline", outputs=("stats",),
                      cpus={CPU}) as (proc, h):
        camera, burners = Camera(h), []
        try:
            h.wait_for(lambda: len(h.messages("stats")) >= 5, 120, "the first frames")
            dense = _idle_p50(h)
            assert all(r.successful for r in h.set(merge_budget=1.0, merge_bias=MAX_EXTRA_BIAS))
            merged = _idle_p50(h)  # the top of the controller's ladder
            assert all(r.successful for r in h.set(merge_budget=0.0, merge_bias=0.0))
            # On a quarter of the CPU the dense ViT misses this target and the top rung meets it,
            # each by the same factor (the square root of the dense / merged speed-up).
            target = (BURNERS + 1) * (dense * merged) ** 0.5
            assert dense < 0.9 * target and merged < 0.75 * dense, (dense, merged, target)
            time.sleep(1.0)
            assert h.set(latency_target_ms=target)[0].successful
            time.sleep(3.0)
            burners = _burners()
            loaded_at = time.time()
            time.sleep(12.0)
            loaded_state = h.diagnostics_value("latency_target")
            for burner in burners:
                burner.kill()
                burner.wait()
            gone_at = time.time()
            time.sleep(6.0)
            state = h.diagnostics_value("latency_target")
        finally:
            camera.stop()
            for burner in burners:
                burner.kill()
                burner.wait()
            h.set(latency_target_ms=0.0)
        assert proc.poll() is None
    loaded = [f for f in _frames(h, loaded_at) if f.sent < gone_at][SETTLE_FRAMES:]
    after = _frames(h, gone_at)
    assert len(loaded) >= 10 and len(after) >= 20, (len(loaded), len(after))
    # Busy cores: the node merges more than the user asked and its typical frame meets the target
    # (the share of late frames on a quiet machine is measured by `make bench`), or, where the rest
    # of the machine leaves it less of the CPU than planned, it merges all it may and says that the
    # target is out of reach.
    assert sum(f.budget != FLOOR for f in loaded) >= 0.8 * len(loaded), [f.budget for f in loaded]
    if loaded_state.startswith("saturated: "):
        assert f"target {target:g} ms not reachable" in loaded_state, loaded_state
        assert max(f.budget for f in loaded) == (1.0, MAX_EXTRA_BIAS), [f.budget for f in loaded]
    else:
        latencies = [f.latency_ms for f in loaded]
        assert percentile(latencies, 50) <= target, (target, dense, merged, [round(x) for x in latencies])
    # The load gone: back to the user's budget, and less merging since than under the load (the
    # rest of the machine's load may still push a frame up now and then). How fast it comes back is
    # measured by `make bench`.
    back = next((f.sent for f in after if f.budget == FLOOR), None)
    assert back is not None and back - gone_at <= 5.0, [(round(f.sent - gone_at, 1), f.budget) for f in after]
    settled = [sum(f.budget) for f in after if f.sent >= back]
    assert sum(settled) / len(settled) < 0.5 * sum(sum(f.budget) for f in loaded) / len(loaded)
    assert state.startswith(f"holding {target:g} ms: "), state
