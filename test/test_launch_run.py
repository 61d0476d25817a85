"""Every launch file, for real: `ros2 launch clustvit_ros FILE` with the arguments a user passes.

Each launch runs in its own process group; a test participant feeds the camera topic the launch
file remaps the node to (the demo feeds itself), and every node must publish a mask for that
image, carry the parameters its launch file and params file give it, and run with the Fast DDS
profile the launch sets. Then Ctrl-C (SIGINT to the whole group, as a terminal sends it) must end
every process cleanly with exit code 0 within launch's 5 s, also when pressed again and again.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from ament_index_python.packages import PackageNotFoundError, get_package_prefix
from rclpy.context import Context

from support.installed import share
from support.launch_run import Launch
from support.models import make_checkpoint
from support.processes import REPO
from support.ros2_tools import lifecycle, requires_ros2, stop_daemon
from support.ros_harness import Harness, rgb_image



def _installed(package: str) -> bool:
    try:
        get_package_prefix(package)
    except PackageNotFoundError:
        return False
    return True


HAVE_RVIZ2 = _installed("rviz2")


@dataclass(frozen=True)
class Case:
    arguments: dict[str, str]
    nodes: dict[str, str | None]  # node -> camera topic the test feeds (None: the launch has a camera)
    parameters: dict[str, dict] = field(default_factory=dict)  # node -> expected parameter values
    fastdds: bool = True
    warning: str | None = None  # logged exactly once


CASES = {
    "clustvit.launch.py": Case(
        {"camera_topic": "/cam/image", "namespace": "robot", "node_name": "seg", "merge_budget": "0.25",
         "latency_target_ms": "5000", "device": "cpu", "dtype": "bf16", "log_level": "debug"},
        {"/robot/seg": "/cam/image"},
        {"/robot/seg": {"merge_budget": 0.25, "latency_target_ms": 5000.0, "device": "cpu", "dtype": "bf16",
                        "use_sim_time": False, "autostart": True}}),
    "usb_camera.launch.py": Case({}, {"/clustvit": "/image_raw"}),
    "realsense.launch.py": Case({}, {"/clustvit": "/camera/camera/color/image_raw"}),
    "zed.launch.py": Case({}, {"/clustvit": "/zed/zed_node/rgb/color/rect/image"}),
    "oak.launch.py": Case({"fastdds": "false"}, {"/clustvit": "/oak/rgb/image_raw"}, fastdds=False),
    "jetson.launch.py": Case({"camera_topic": "/camera/camera/color/image_raw"},
                             {"/clustvit": "/camera/camera/color/image_raw"},
                             {"/clustvit": {"device": "cuda", "dtype": "fp16"}}),  # runs on the CPU here
    "bag_replay.launch.py": Case({"camera_topic": "/camera/image_raw"}, {"/clustvit": "/camera/image_raw"},
                                 {"/clustvit": {"use_sim_time": True, "qos_reliability": "reliable"}}),
    # rviz:=true by default: without rviz2 one warning and the rest runs (with it, no display in a test)
    "demo.launch.py": Case({"rviz": "false"} if HAVE_RVIZ2 else {}, {"/clustvit": None},
                           {"/clustvit": {"qos_reliability": "reliable"}},
                           warning=None if HAVE_RVIZ2 else "rviz:=true but rviz2 is not installed: going on without it"),
    "two_cameras.launch.py": Case(
        {"front_topic": "/front/image_raw", "rear_topic": "/rear/image_raw", "rear_merge_budget": "0.5"},
        {"/front/clustvit": "/front/image_raw", "/rear/clustvit": "/rear/image_raw"},
        {"/front/clustvit": {"threads": 0, "merge_budget": 1.0},
         "/rear/clustvit": {"threads": 0, "merge_budget": 0.5}}),
}


def test_every_launch_file_is_run():
    assert set(CASES) == {p.name for p in (REPO / "launch").glob("*.launch.py")}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("model") / "tiny.safetensors")


def _environment() -> dict:
    """The test's environment (loopback DDS, own domain) without the Fast DDS profile, which the
    launch files set themselves."""
    return {k: v for k, v in os.environ.items() if k != "FASTDDS_DEFAULT_PROFILES_FILE"}


def _process_environment(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def _check_node(launch: Launch, harness: Harness, topic: str | None, stamp: tuple[int, int], case: Case) -> None:
    """The node answers, publishes a mask for the image fed to `topic` (or its camera's), has its parameters."""
    harness.wait_for(lambda: launch.running() and harness.params.wait_for_services(0.5), 90.0,
                     f"{harness.fqn}'s parameter services")
    if topic is None:  # the demo camera: config/demo_camera.yaml's size and frame_id
        mask = harness.wait_for(lambda: launch.running() and harness.messages("mask"), 60.0, f"{harness.fqn}/mask")[0]
        assert (mask.width, mask.height, mask.header.frame_id) == (480, 360, "camera_optical_frame")
    else:
        harness.wait_for(lambda: launch.running() and harness.image_pub.get_subscription_count(), 60.0,
                         f"{harness.fqn} to subscribe to {topic}")
        image = rgb_image(48, 64, seed=stamp[0])
        mask = harness.output_for("mask", stamp, 60.0, republish=lambda: harness.publish(image, stamp))
        assert (mask.width, mask.height, mask.encoding) == (64, 48, "mono8")
    expected = case.parameters.get(harness.fqn, {})
    assert dict(zip(expected, harness.get(*expected))) == expected


def _run(launch_file: str, checkpoint: Path, context: Context, log: Path, presses: int = 1) -> Launch:
    """Launch, check every node, press Ctrl-C `presses` times; returns the exited launch."""
    case = CASES[launch_file]
    arguments = {**case.arguments, "checkpoint": str(checkpoint)}
    with Launch(launch_file, arguments, log, env=_environment()) as launch:
        harnesses = [Harness(context, fqn, outputs=("mask",), image_topic=topic)
                     for fqn, topic in case.nodes.items()]
        try:
            for i, (harness, topic) in enumerate(zip(harnesses, case.nodes.values())):
                _check_node(launch, harness, topic, (100 + i, 0), case)
        finally:
            for harness in harnesses:
                harness.close()
        nodes = [pid for name, pid in launch.pids().items() if name.startswith("clustvit_node")]
        assert len(nodes) == len(case.nodes)
        for pid in nodes:
            profile = _process_environment(pid).get("FASTDDS_DEFAULT_PROFILES_FILE")
            assert profile == (str(share() / "config" / "fastdds.xml") if case.fastdds else None)
        if case.warning:
            assert launch.output.count(case.warning) == 1, launch.output
        launch.ctrl_c(presses, gap=0.02)
    return launch


@requires_ros2
@pytest.mark.parametrize("launch_file", CASES)
def test_launch_file_runs_and_stops_on_ctrl_c(launch_file, checkpoint, rclpy_context, tmp_path):
    _run(launch_file, checkpoint, rclpy_context, tmp_path / "launch.log").assert_clean_exit()


@requires_ros2
@pytest.mark.parametrize("launch_file", ["demo.launch.py", "two_cameras.launch.py"])
def test_ctrl_c_again_and_again_still_ends_everything_cleanly(launch_file, checkpoint, rclpy_context, tmp_path):
    """Ctrl-C every 20 ms until everything has exited (a second press always lands mid-shutdown)."""
    launch = _run(launch_file, checkpoint, rclpy_context, tmp_path / "launch.log", presses=500)
    for pid in launch.pids().values():
        assert f"process has finished cleanly [pid {pid}]" in launch.output, launch.output
    launch.assert_clean_exit()


@requires_ros2
@pytest.mark.parametrize("launch_file,nodes", [("clustvit.launch.py", {"/clustvit": "/camera/image_raw"}),
                                              ("two_cameras.launch.py", CASES["two_cameras.launch.py"].nodes)])
def test_autostart_false_leaves_the_nodes_to_ros2_lifecycle(launch_file, nodes, checkpoint, rclpy_context, tmp_path):
    """`autostart:=false`: every node waits unconfigured, unsubscribed; `ros2 lifecycle set` configures and
    activates it and it segments; Ctrl-C still ends everything cleanly."""
    stop_daemon()
    with Launch(launch_file, {"autostart": "false", "checkpoint": str(checkpoint)}, tmp_path / "launch.log",
                env=_environment()) as launch:
        harnesses = {fqn: Harness(rclpy_context, fqn, outputs=("mask",), image_topic=topic)
                     for fqn, topic in nodes.items()}
        try:
            for i, (fqn, harness) in enumerate(harnesses.items()):
                harness.wait_for(lambda: launch.running() and harness.params.wait_for_services(0.5), 90.0,
                                 f"{fqn}'s parameter services")
                assert harness.get("autostart") == [False]
                assert lifecycle("get", fqn).stdout.strip() == "unconfigured [1]"
                assert harness.image_pub.get_subscription_count() == 0
                for transition in ("configure", "activate"):
                    result = lifecycle("set", fqn, transition)
                    assert result.stdout.strip() == "Transitioning successful", result.stdout + result.stderr
                image = rgb_image(48, 64)
                harness.output_for("mask", (110 + i, 0), 60, republish=lambda: harness.publish(image, (110 + i, 0)))
        finally:
            for harness in harnesses.values():
                harness.close()
            stop_daemon()
        launch.ctrl_c()
    launch.assert_clean_exit()


@requires_ros2
@pytest.mark.parametrize("launch_file,arguments,reason", [
    ("realsense.launch.py", {"driver": "true"}, "package 'realsense2_camera' not found"),
    ("zed.launch.py", {"driver": "true"}, "package 'zed_wrapper' not found"),
    ("oak.launch.py", {"driver": "true"}, "package 'depthai_ros_driver' not found"),
    ("usb_camera.launch.py", {"driver": "usb_cam"}, "package 'usb_cam' not found"),
    ("usb_camera.launch.py", {"driver": "gstreamer"}, 'provided value "gstreamer" is not valid'),
    ("clustvit.launch.py", {"merge_budget": "half"}, "merge_budget must be a number, got 'half'"),
    ("clustvit.launch.py", {"latency_target_ms": "soon"}, "latency_target_ms must be a number, got 'soon'"),
    ("clustvit.launch.py", {"threads": "1.5"}, "threads must be an integer, got '1.5'"),
    ("clustvit.launch.py", {"rviz": "maybe"}, "rviz must be true or false, got 'maybe'"),
    ("clustvit.launch.py", {"autostart": "later"}, "autostart must be true or false, got 'later'"),
], ids=lambda v: v if isinstance(v, str) and v.endswith(".py") else None)
def test_launch_refuses_what_it_cannot_do_before_starting_anything(launch_file, arguments, reason, tmp_path):
    """A driver that is not installed or a bad argument stops the launch with the reason, nothing started."""
    with Launch(launch_file, arguments, tmp_path / "launch.log") as launch:
        assert launch.proc.wait(60) != 0
        assert reason in launch.output and "process started" not in launch.output, launch.output
