"""The launch library's LaunchService runs demo.launch.py (in the main thread of a process of its
own, the only place it runs) and a SIGINT to that process stops everything cleanly."""
from __future__ import annotations

import os
import signal
import sys

from support import processes
from support.models import make_checkpoint
from support.ros2_tools import requires_ros2
from support.ros_harness import Harness

pytestmark = requires_ros2
SCRIPT = processes.REPO / "test" / "support" / "launch_service_main.py"


def test_launch_service_runs_the_demo_and_stops_on_sigint(rclpy_context, tmp_path):
    checkpoint = make_checkpoint(tmp_path / "tiny.safetensors")
    log = tmp_path / "launch.log"
    proc = processes.start_logged([sys.executable, str(SCRIPT), "demo.launch.py", "rviz:=false", "rate:=5.0",
                                   f"checkpoint:={checkpoint}"], log)
    harness = Harness(rclpy_context, "/clustvit", outputs=("stats",))

    def stats():
        assert proc.poll() is None, f"the launch exited with {proc.returncode}:\n{log.read_text()}"
        return harness.messages("stats")

    try:
        harness.wait_for(stats, 120.0, "FrameStats from the launched node")
        os.kill(proc.pid, signal.SIGINT)  # the launch process only: it stops its processes itself
        assert processes.wait_exit(proc, 10.0), log.read_text()
    finally:
        harness.close()
        processes.kill_group(proc)
    output = log.read_text()
    assert proc.returncode == 0, output
    assert output.count("process has finished cleanly") == 2 and "process has died" not in output, output
