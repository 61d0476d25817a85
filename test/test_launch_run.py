"""demo.launch.py run the way launch_ros would run it, without `launch`: real processes over real DDS.

The launch file is evaluated (test/support/launch_eval.py) and every node it starts, except rviz2,
is started as launch_ros does: the installed executable with `--ros-args -r __node:= -r __ns:=`,
its params files, its parameter dicts written to a `/**:` YAML, its remappings and environment.
Then the demo camera must feed the node, the rviz config's topics must be the ones the running
processes publish, a live merge_budget change must apply, and SIGINT must end both with code 0.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
import rclpy
import yaml
from rclpy.context import Context
from sensor_msgs.msg import Image

from support import processes
from support.launch_eval import NodeSpec, evaluate
from support.models import make_checkpoint
from support.ros_harness import Harness

LIB = Path(sys.prefix) / "lib"


def launch_ros_argv(node: NodeSpec, tmp_path: Path) -> list[str]:
    """The command line launch_ros builds for `node`."""
    executable = LIB / node.package / node.executable
    assert executable.is_file(), f"{executable} is not installed (run make setup)"
    argv = [str(executable), *node.arguments, "--ros-args"]
    if node.name:
        argv += ["-r", f"__node:={node.name}"]
    argv += ["-r", f"__ns:={node.namespace}"]
    for i, entry in enumerate(node.parameters):
        if isinstance(entry, dict):
            path = tmp_path / f"{node.name}_params_{i}.yaml"
            path.write_text(yaml.safe_dump({"/**": {"ros__parameters": entry}}))
            entry = path
        argv += ["--params-file", str(entry)]
    for source, target in node.remappings:
        argv += ["-r", f"{source}:={target}"]
    return argv


@pytest.fixture
def demo_launch(tmp_path):
    checkpoint = make_checkpoint(tmp_path / "tiny.safetensors")
    launched = evaluate("demo.launch.py", {"rviz": "true", "rate": "8.0", "checkpoint": str(checkpoint)})
    specs = [n for n in launched.nodes if n.package != "rviz2"]
    procs = {}
    try:
        for spec in specs:
            procs[spec.executable] = processes.start(
                launch_ros_argv(spec, tmp_path), env={**os.environ, **spec.environment})
        yield launched, procs
    finally:
        for proc in procs.values():
            processes.stop(proc)


def test_demo_launch_runs_end_to_end(demo_launch):
    launched, procs = demo_launch
    [camera_spec] = launched.nodes_of("clustvit_ros", "demo_camera")
    [node_spec] = launched.nodes_of("clustvit_ros", "clustvit_node")
    [rviz] = launched.nodes_of("rviz2", "rviz2")
    assert node_spec.environment["FASTDDS_DEFAULT_PROFILES_FILE"].endswith("config/fastdds.xml")

    context = Context()
    rclpy.init(context=context)
    harness = Harness(context, node_spec.fqn, outputs=("stats", "overlay", "mask_color"))
    frames = []
    harness.node.create_subscription(Image, "/camera/image_raw", lambda m: frames.append((m, time.time())), 10)
    try:
        def alive():
            for name, proc in procs.items():
                if proc.poll() is not None:
                    raise AssertionError(f"{name} exited with {proc.returncode}:\n{proc.stdout.read()}")
            return True

        def processed_frames_seen():
            seen = {(m.header.stamp.sec, m.header.stamp.nanosec) for m, _ in list(frames)}
            return seen & {(s.header.stamp.sec, s.header.stamp.nanosec) for s in harness.messages("stats")}

        harness.wait_for(lambda: alive() and len(harness.messages("stats")) >= 3 and processed_frames_seen(),
                         120.0, "FrameStats for the demo camera's images")
        harness.wait_for(lambda: harness.messages("overlay") and harness.messages("mask_color"), 30.0,
                         "overlay and mask_color")

        # the camera: stamped now, with its frame_id, at the configured size
        image, received = frames[-1]
        stamp = image.header.stamp.sec + image.header.stamp.nanosec * 1e-9
        assert abs(received - stamp) < 5.0
        assert image.header.frame_id == "camera_optical_frame"
        assert (image.width, image.height, image.encoding) == (480, 360, "rgb8")
        stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m, _ in frames]
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
        # the node processed the camera's frames (outputs carry the input header): waited for above
        stats = harness.messages("stats")
        assert all(s.header.frame_id == "camera_optical_frame" and s.gflops > 0 for s in stats)

        # rviz: after the launch's remappings its topics are what these processes publish
        node_topics = {t for t, _ in harness.node.get_publisher_names_and_types_by_node(
            node_spec.name, node_spec.namespace)}
        camera_topics = {t for t, _ in harness.node.get_publisher_names_and_types_by_node(
            camera_spec.name, camera_spec.namespace)}
        shown = {dict(rviz.remappings).get(t, t) for t in ("/camera/image_raw", "/clustvit/mask_color",
                                                          "/clustvit/overlay")}
        assert shown <= node_topics | camera_topics, (shown, node_topics, camera_topics)

        # a live budget change through the parameter service applies to the next frames
        assert harness.set(merge_budget=0.0)[0].successful
        count = len(harness.messages("stats"))
        harness.wait_for(lambda: any(s.merge_budget == 0.0 and s.dense
                                     for s in harness.messages("stats")[count:]), 30.0, "a dense frame")
    finally:
        harness.close()
        rclpy.shutdown(context=context)
    for name, proc in procs.items():
        code, output = processes.stop(proc)
        assert code == 0, f"{name} exited with {code} on SIGINT:\n{output}"
