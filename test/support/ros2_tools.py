"""The ROS 2 command-line and launch tools (`ros2`, launch_ros) for the tests that drive them.

On a ROS 2 installation they are the system's (the sourced workspace's `ros2` on PATH); in the
venv they come from ../shared/ros2-cli through `make setup`. Without them the tests that need
them skip, all with the same reason.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

# The interpreter's own bin/ first (a venv that holds the kit), then PATH (a sourced ROS 2).
ROS2 = shutil.which("ros2", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
AVAILABLE = ROS2 is not None and importlib.util.find_spec("launch_ros") is not None
REASON = ("needs the ROS 2 command-line and launch tools (ros2, launch_ros): source a ROS 2 "
          "installation, or run `make setup` with ../shared/ros2-cli present (ROS2_CLI_KIT=DIR)")

requires_ros2 = pytest.mark.skipif(not AVAILABLE, reason=REASON)


def ros2(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """`ros2 ARGS` as typed in a terminal; output captured as text."""
    return subprocess.run([ROS2, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def stop_daemon() -> None:
    """Stop the ros2 CLI daemon of this domain that `ros2 topic/param/node` started, if any."""
    ros2("daemon", "stop", timeout=30.0)


def lifecycle(verb: str, node: str, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    """`ros2 lifecycle VERB NODE ARGS`, repeated while the CLI does not see the node yet."""
    deadline = time.monotonic() + timeout
    while True:
        result = ros2("lifecycle", verb, node, *args, timeout=timeout)
        if "Node not found" not in result.stderr or time.monotonic() > deadline:
            return result
        time.sleep(0.5)
