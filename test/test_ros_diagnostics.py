"""/diagnostics figures: shared by the inference worker and the executor's timer, per period."""
from __future__ import annotations

import sys
import threading

from clustvit_ros.ros.stats import DiagnosticsWindow
from clustvit_ros.runtime.frame import FrameTimes

TIMES = FrameTimes(queue_ms=1.0, decode_ms=1.0, output_ms=1.0, latency_ms=10.0, stamp_age_ms=12.0)


def _values(status) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def test_no_frame_or_error_is_lost_between_the_worker_and_the_timer():
    """The worker adds while the timer reads and resets: every frame lands in exactly one period."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)  # hand the GIL over often (default 5 ms): an unguarded window loses frames
    try:
        window, frames, periods = DiagnosticsWindow(), 300_000, []
        done = threading.Event()

        def worker():
            for i in range(frames):
                window.add_frame(TIMES, 1.0)
                if i % 10 == 0:
                    window.add_error("input", f"bad frame {i}")
            done.set()

        thread = threading.Thread(target=worker)
        thread.start()
        while not done.is_set():
            periods.append(_values(window.status(1.0, 0, {})))
        thread.join()
        periods.append(_values(window.status(1.0, 0, {})))
    finally:
        sys.setswitchinterval(old)
    assert sum(round(float(p["rate_hz"])) for p in periods) == frames
    assert periods[-1]["frames_processed"] == str(frames)
    assert periods[-1]["input_errors"] == str(frames // 10)


def test_the_level_warns_for_a_period_with_bad_frames_and_the_totals_stay():
    window = DiagnosticsWindow()
    window.add_error("input", "bad input image: truncated data")
    window.add_frame(TIMES, 1.0)
    warn = window.status(1.0, 0, {})
    assert warn.level == warn.WARN and "1 bad frame" in warn.message
    window.add_frame(TIMES, 1.0)
    ok = window.status(1.0, 0, {})
    assert ok.level == ok.OK, ok.message  # nothing bad happened in this period
    values = _values(ok)
    assert values["input_errors"] == "1" and "truncated" in values["last_error"]
