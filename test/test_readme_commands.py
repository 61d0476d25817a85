"""The README's `ros2` commands, run as written with the real ROS 2 CLI, their output checked.

Every `ros2 ...` line of the README's bash blocks must be in CHECKS, in README order: a command that
is added, changed or stops working fails here. They run against the README's own
`ros2 run clustvit_ros clustvit_node ...` and then `ros2 launch clustvit_ros demo.launch.py rviz:=false`.
"""
from __future__ import annotations

import re
import shlex
import signal
import time
import warnings
from pathlib import Path
from typing import Callable

import pytest
import yaml

from clustvit_ros.ros.params import SPECS
from support import processes
from support.launch_run import Launch
from support.processes import REPO
from support.ros2_tools import ROS2, requires_ros2, ros2, stop_daemon
from support.ros_harness import Harness, rgb_image



def readme_commands() -> list[str]:
    """Every `ros2 ...` line of the README's ```bash blocks, without its trailing comment."""
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith("ros2 ")]


def run(command: str, timeout: float = 60.0):
    """The README command, as the user types it (the `ros2` this test uses)."""
    return ros2(*shlex.split(command)[1:], timeout=timeout)


def streamed(command: str, text: str, log: Path, times: int = 1, timeout: float = 60.0) -> str:
    """Run a command that streams until Ctrl-C; once `text` has appeared `times` times, Ctrl-C it
    and return its output."""
    proc = processes.start_logged([ROS2, *shlex.split(command)[1:]], log)
    deadline = time.monotonic() + timeout
    try:
        while log.read_text().count(text) < times:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        code = processes.ctrl_c(proc)
    finally:
        processes.kill_group(proc)
    # ros2cli's own exit code on Ctrl-C is 0 or SIGINT's number, by verb
    assert code in (0, signal.SIGINT) and "Traceback" not in log.read_text(), (code, log.read_text())
    return log.read_text()


def succeeded(name: str, value: float) -> Callable:
    def check(command: str, tmp_path: Path) -> None:
        result = run(command)
        assert result.stdout.strip() == "Set parameter successful", result.stdout + result.stderr
        assert run(f"ros2 param get /clustvit {name}").stdout.strip() == f"Double value is: {value}"
    return check


def latency_target(value: float, state: str) -> Callable:
    """The target is set and /diagnostics names its state (`off`, or `holding`/`saturated` ...)."""
    def check(command: str, tmp_path: Path) -> None:
        succeeded("latency_target_ms", value)(command, tmp_path)
        deadline = time.monotonic() + 30
        while True:  # /diagnostics comes once a second; the first may predate the change
            out = run("ros2 topic echo /diagnostics --once", timeout=30).stdout
            values = {kv["key"]: kv["value"] for status in yaml.safe_load(out.split("---")[0])["status"]
                      for kv in status["values"]}
            if values.get("latency_target_ms") == f"{value:g}":
                break
            assert time.monotonic() < deadline, out
        assert re.match(state, values["latency_target"]), values["latency_target"]
    return check


def refused(command: str, tmp_path: Path) -> None:
    before = run("ros2 param get /clustvit merge_budget").stdout
    result = run(command)
    assert ("Setting parameter failed: Parameter merge_budget out of range Min: 0.0, Max: 1.0, value: 1.5"
            in result.stderr), result.stdout + result.stderr
    assert run("ros2 param get /clustvit merge_budget").stdout == before  # nothing changed


def got(command: str, tmp_path: Path) -> None:
    assert run(command).stdout.strip() == "Double value is: 0.0"  # the last value set above


def described(command: str, tmp_path: Path) -> None:
    out = run(command).stdout
    assert "Parameter name: merge_budget" in out and "Type: double" in out, out
    assert "Min value: 0.0" in out and "Max value: 1.0" in out, out
    assert SPECS["merge_budget"].description in " ".join(out.split()), out


def echoed_once(command: str, tmp_path: Path) -> None:
    result = run(command)
    stats = yaml.safe_load(result.stdout.split("---")[0])
    assert stats["header"]["frame_id"] == "camera_optical_frame", result.stdout
    assert 0 < stats["gflops"] <= stats["dense_gflops"] and stats["patch_tokens"] > 0, result.stdout


def hz(command: str, tmp_path: Path) -> None:
    out = streamed(command, "average rate:", tmp_path / "hz.log", times=3)  # the first is one interval
    rate = float(re.findall(r"average rate: ([\d.]+)", out)[-1])
    assert 0.0 < rate < 15.0, out  # at most the demo camera's 10 Hz; how much less depends on the CPU


def echoed_field(command: str, tmp_path: Path) -> None:
    out = streamed(command, "---\n", tmp_path / "echo.log")
    assert float(out.split("---")[0]) > 0, out


def in_state(expected: str) -> Callable:
    def check(command: str, tmp_path: Path) -> None:
        result = run(command)
        assert result.stdout.strip() == expected, result.stdout + result.stderr
    return check


def _camera_subscribers() -> int:
    out = run("ros2 topic info /camera/image_raw").stdout
    return int(re.search(r"Subscription count: (\d+)", out).group(1))


def transitioned(state: str, camera_subscribers: int) -> Callable:
    """The transition succeeds, the node is then in `state`, and the camera topic has that many
    subscribers (the node is the demo camera's only one)."""
    def check(command: str, tmp_path: Path) -> None:
        result = run(command, timeout=120)
        assert result.stdout.strip() == "Transitioning successful", result.stdout + result.stderr
        in_state(state)("ros2 lifecycle get /clustvit", tmp_path)
        deadline = time.monotonic() + 30  # the CLI daemon's graph catches up
        while _camera_subscribers() != camera_subscribers:
            assert time.monotonic() < deadline, run("ros2 topic info /camera/image_raw").stdout
            time.sleep(0.5)
    return check


def not_here(why: str) -> Callable:
    def note(command: str, tmp_path: Path) -> None:
        warnings.warn(f"README command not run here: {command} ({why})")
    return note


def bag_recorded(command: str, tmp_path: Path) -> None:
    if run("ros2 bag --help").returncode != 0:
        return not_here("needs rosbag2, which this ROS 2 installation lacks")(command, tmp_path)
    proc = processes.start_logged([ROS2, *shlex.split(command)[1:]], tmp_path / "record.log", cwd=tmp_path)
    time.sleep(3.0)
    code = processes.ctrl_c(proc)
    assert code in (0, signal.SIGINT) and list(tmp_path.glob("rosbag2_*/*.mcap")), (tmp_path / "record.log").read_text()


NODE_COMMAND = "ros2 run clustvit_ros clustvit_node --ros-args -r image:=/camera/image_raw"
LAUNCH_COMMAND = "ros2 launch clustvit_ros demo.launch.py rviz:=false"
CHECKS: dict[str, Callable | None] = {  # None: a command that starts what the checks run against
    NODE_COMMAND: None,
    LAUNCH_COMMAND: None,
    "ros2 topic echo /clustvit/stats --once": echoed_once,
    "ros2 topic hz /clustvit/stats": hz,
    "ros2 run rqt_plot rqt_plot /clustvit/gflops/data /clustvit/latency_ms/data": not_here("rqt_plot is a GUI"),
    "ros2 topic echo /clustvit/stats --field gflops": echoed_field,
    "ros2 bag record /clustvit/stats /diagnostics": bag_recorded,
    "ros2 param set /clustvit merge_budget 0.5": succeeded("merge_budget", 0.5),
    "ros2 param set /clustvit merge_budget 0.0": succeeded("merge_budget", 0.0),
    "ros2 param set /clustvit merge_bias 2.0": succeeded("merge_bias", 2.0),
    "ros2 param get /clustvit merge_budget": got,
    "ros2 param describe /clustvit merge_budget": described,
    "ros2 param set /clustvit merge_budget 1.5": refused,
    "ros2 param set /clustvit latency_target_ms 80.0": latency_target(80.0, r"(holding 80 ms|saturated): "),
    "ros2 param set /clustvit latency_target_ms 0.0": latency_target(0.0, r"off$"),
    "ros2 lifecycle get /clustvit": in_state("active [3]"),
    "ros2 lifecycle set /clustvit deactivate": transitioned("inactive [2]", camera_subscribers=0),
    "ros2 lifecycle set /clustvit cleanup": transitioned("unconfigured [1]", camera_subscribers=0),
    "ros2 lifecycle set /clustvit configure": transitioned("inactive [2]", camera_subscribers=0),
    "ros2 lifecycle set /clustvit activate": transitioned("active [3]", camera_subscribers=1),
}


def test_every_readme_command_is_checked_in_order():
    assert readme_commands() == list(CHECKS)


@pytest.fixture
def daemon():
    """A fresh ros2 CLI daemon for this test (none left from earlier runs), stopped afterwards."""
    stop_daemon()
    yield
    stop_daemon()


def _node_list_shows(name: str, launch: Launch | None = None) -> bool:
    """Poll `ros2 node list` until `name` is there (what a user waits for, and it primes the daemon)."""
    deadline = time.monotonic() + 90
    while name not in run("ros2 node list").stdout.split():
        assert launch is None or launch.running()
        assert time.monotonic() < deadline, f"{name} never appeared in `ros2 node list`"
        time.sleep(0.5)
    return True


@requires_ros2
def test_the_readme_node_command_segments_the_camera_topic(daemon, rclpy_context, tmp_path):
    proc = processes.start_logged([ROS2, *shlex.split(NODE_COMMAND)[1:]], tmp_path / "node.log")
    harness = Harness(rclpy_context, "/clustvit", outputs=("mask",), image_topic="/camera/image_raw")
    try:
        harness.wait_ready(90)
        image = rgb_image(48, 64)
        harness.output_for("mask", (7, 0), 60, republish=lambda: harness.publish(image, (7, 0)))
        code = processes.ctrl_c(proc)
    finally:
        harness.close()
        processes.kill_group(proc)
    assert code == 0 and "Traceback" not in (tmp_path / "node.log").read_text()


@requires_ros2
def test_the_readme_commands_work_against_the_demo_launch(daemon, tmp_path):
    launch_args = dict(arg.split(":=") for arg in shlex.split(LAUNCH_COMMAND)[4:])
    with Launch(shlex.split(LAUNCH_COMMAND)[3], launch_args, tmp_path / "launch.log") as launch:
        _node_list_shows("/clustvit", launch)
        for command, check in CHECKS.items():
            if check is not None:
                check(command, tmp_path)
                launch.running()
        launch.ctrl_c()
    launch.assert_clean_exit()
