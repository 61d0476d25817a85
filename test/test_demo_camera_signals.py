"""The installed demo_camera ends with code 0 on any number of SIGINT/SIGTERM at any moment, torch-free."""
from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from support import processes
from support.installed import executable

# When to signal: once the script has taken over the signals (its imports are still running), while
# it renders the synthetic scenes, and while it publishes.
MOMENTS = {"importing": None, "rendering": "rendering", "publishing": "publishing"}
SEQUENCES = {"ctrl-c": (signal.SIGINT,), "ctrl-c-twice": (signal.SIGINT, signal.SIGINT),
             "sigint-then-sigterm": (signal.SIGINT, signal.SIGTERM)}


def _start_camera(log: Path):
    """The synthetic source: it has the slow rendering moment, and its renderer must stay torch-free."""
    return processes.start_logged([str(executable("demo_camera")), "--ros-args", "-p", "rate:=30.0",
                                   "-p", "source:=synthetic"], log)


@pytest.mark.parametrize("sequence", SEQUENCES)
@pytest.mark.parametrize("moment", MOMENTS)
def test_signals_at_any_moment_end_the_camera_with_code_0(tmp_path, moment, sequence):
    log = tmp_path / "camera.log"
    proc = _start_camera(log)
    try:
        deadline = time.monotonic() + 30
        while not processes.handles_sigterm(proc.pid):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.005)
        if MOMENTS[moment]:
            processes.wait_for_text(proc, log, MOMENTS[moment], 30)
        for sig in SEQUENCES[sequence]:
            proc.send_signal(sig)
            time.sleep(0.05)
        assert processes.wait_exit(proc, 5.0), f"still running 5 s after the signal:\n{log.read_text()}"
    finally:
        processes.kill_group(proc)
    output = log.read_text()
    assert proc.returncode == 0, output
    assert "Traceback" not in output and "Error" not in output, output


def test_the_camera_never_loads_torch(tmp_path):
    log = tmp_path / "camera.log"
    proc = _start_camera(log)
    try:
        processes.wait_for_text(proc, log, "publishing", 60)
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
    finally:
        code, _ = processes.stop(proc)
    assert code == 0
    assert "libtorch" not in maps, "demo_camera imported torch"
