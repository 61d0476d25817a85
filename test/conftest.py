"""Test harness: loopback-only DDS on a domain of this run's own, per-test rclpy contexts.

The environment is fixed here, before any test module imports rclpy, so no discovery traffic ever
leaves loopback (``ROS_AUTOMATIC_DISCOVERY_RANGE`` from Iron on, ``ROS_LOCALHOST_ONLY`` on Humble;
Kilted ignores the latter, Jazzy honours it with a deprecation warning) and concurrent runs do not
see each other. Child processes started by tests inherit these variables.
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["ROS_LOCALHOST_ONLY"] = "1"
os.environ["ROS_DOMAIN_ID"] = os.environ.get("CLUSTVIT_TEST_DOMAIN_ID") or str(1 + os.getpid() % 100)
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(REPO / "config" / "fastdds.xml"))
if not os.environ.get("AMENT_PREFIX_PATH"):
    os.environ["AMENT_PREFIX_PATH"] = sys.prefix
os.environ.setdefault("PYTHONUNBUFFERED", "1")
# A shell that starts the tests in the background (`make test &` in a script) ignores SIGINT, and
# every child would inherit that: `ros2 launch`/`ros2 topic echo` would then ignore the Ctrl-C the
# tests deliver. A Python handler here is reset to the default in each child at exec.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

import pytest  # noqa: E402


@pytest.fixture
def rclpy_context():
    """An initialised rclpy context of this test's own; always shut down afterwards."""
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        if context.ok():
            rclpy.shutdown(context=context)


sys.path.insert(0, str(Path(__file__).resolve().parent))
