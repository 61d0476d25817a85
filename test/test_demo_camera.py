"""The demo camera: synthetic scenes, image folders and videos, stamped like a camera driver."""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image

from clustvit_ros.ros.demo_camera import PARAMETERS, DemoCamera, SourceError
from clustvit_ros.ros.image_codec import compressed_to_rgb8, image_to_numpy
from support import processes


def run_camera(context, params: dict, frames: int, timeout: float = 30.0):
    """Start a DemoCamera with `params`; return (node, images, compressed) after `frames` images."""
    listener = rclpy.create_node("camera_listener", context=context)
    images, compressed = [], []
    listener.create_subscription(Image, "image_raw", lambda m: images.append((m, time.time())), 50)
    listener.create_subscription(CompressedImage, "image_raw/compressed", compressed.append, 50)
    camera = DemoCamera(context=context, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(listener)
    deadline = time.monotonic() + timeout
    while camera.pub.get_subscription_count() == 0:  # no frame before the listener is matched
        executor.spin_once(timeout_sec=0.05)
        assert time.monotonic() < deadline, "the listener never matched the camera"
    executor.add_node(camera)
    while len(images) < frames and not camera.finished:
        executor.spin_once(timeout_sec=0.05)
        assert time.monotonic() < deadline, f"only {len(images)} of {frames} images"
    for _ in range(10):  # let the last messages arrive
        executor.spin_once(timeout_sec=0.02)
    executor.shutdown()
    listener.destroy_node()
    return camera, images, compressed


def test_synthetic_scenes_pan_and_are_stamped_now(rclpy_context):
    params = {"source": "synthetic", "width": 64, "height": 48, "scenes": 2, "frames_per_scene": 3,
              "rate": 50.0,
              "frame_id": "front_camera_optical_frame", "publish_compressed": True}
    camera, images, compressed = run_camera(rclpy_context, params, frames=7)
    camera.destroy_node()
    arrays = [image_to_numpy(m).copy() for m, _ in images]
    assert all(a.shape == (48, 64, 3) for a in arrays)
    assert all(m.encoding == "rgb8" and m.header.frame_id == "front_camera_optical_frame" for m, _ in images)
    stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m, _ in images]
    assert all(0 < b - a < 1.0 for a, b in zip(stamps, stamps[1:]))  # increasing, about 1/rate apart
    assert all(abs(received - stamp) < 2.0 for stamp, (_, received) in zip(stamps, images))  # now
    assert not np.array_equal(arrays[0], arrays[1])  # the window pans
    assert not np.array_equal(arrays[2], arrays[3])  # then the next scene
    assert np.array_equal(arrays[0], arrays[6])  # two scenes of three frames, then again
    assert compressed and compressed_to_rgb8(compressed[0]).shape == (48, 64, 3)
    assert compressed[0].header.stamp == images[0][0].header.stamp


def test_default_source_is_the_packaged_camvid_frames_in_order_at_native_size(rclpy_context):
    from clustvit_ros.runtime.packaged import SAMPLE_FRAMES, share_path

    files = sorted(share_path(SAMPLE_FRAMES).glob("*.jpg"))[:3]
    camera, images, _ = run_camera(rclpy_context, {"rate": 50.0}, frames=3)
    camera.destroy_node()
    for (msg, _), path in zip(images[:3], files):
        assert (msg.width, msg.height) == (480, 360)
        expected = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        assert np.array_equal(image_to_numpy(msg), expected)


def test_folder_in_name_order_resized_bgr8_and_finishing(rclpy_context, tmp_path):
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    for i, rgb in enumerate(colors):
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), np.full((30 + i, 40, 3), rgb[::-1], np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    params = {"source": str(tmp_path), "width": 20, "height": 10, "encoding": "bgr8", "loop": False,
              "rate": 50.0}
    camera, images, _ = run_camera(rclpy_context, params, frames=5)
    assert camera.finished and camera.published == 3
    camera.destroy_node()
    assert len(images) == 3
    for (msg, _), rgb in zip(images, colors):
        assert (msg.encoding, msg.width, msg.height) == ("bgr8", 20, 10)
        assert tuple(image_to_numpy(msg)[5, 10]) == rgb[::-1]


def test_video_frames_loop(rclpy_context, tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (32, 24))
    for i in range(3):
        writer.write(np.full((24, 32, 3), 60 * i + 20, np.uint8))
    writer.release()
    camera, images, _ = run_camera(rclpy_context, {"source": str(path), "width": 0, "rate": 50.0}, frames=5)
    camera.destroy_node()
    levels = [int(image_to_numpy(m)[12, 16].mean()) for m, _ in images[:5]]
    assert all(m.width == 32 and m.height == 24 for m, _ in images)  # width 0: native size
    assert levels[3] == pytest.approx(levels[0], abs=8) and levels[1] > levels[0] + 30  # looped


def test_parameters_are_declared_read_only_with_descriptions(rclpy_context):
    camera = DemoCamera(context=rclpy_context, parameter_overrides=[
        Parameter("width", value=16), Parameter("height", value=16), Parameter("scenes", value=1)])
    try:
        for spec in PARAMETERS:
            descriptor = camera.describe_parameter(spec.name)
            assert descriptor.description and descriptor.read_only
        assert camera.describe_parameter("rate").floating_point_range[0].to_value == 240.0
    finally:
        camera.destroy_node()
    with pytest.raises(SourceError, match="neither 'camvid', 'synthetic' nor an existing"):
        DemoCamera(context=rclpy_context, parameter_overrides=[Parameter("source", value="/no/such/dir")])


def test_executable_reports_a_bad_source_and_exits_1():
    proc = processes.start_module("clustvit_ros.ros.demo_camera", "--ros-args", "-p", "source:=/no/such.mp4")
    output, _ = proc.communicate(timeout=60)
    code = proc.returncode
    assert code == 1 and "cannot start" in output and "/no/such.mp4" in output


def test_reference_table_lists_the_parameters():
    text = (processes.REPO / "docs" / "reference.md").read_text()
    lines = text[text.index("<!-- demo-camera-parameters-table"):].splitlines()[3:]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[:len(PARAMETERS) + 1]]
    assert not rows[-1][0].startswith("`"), "more rows in the table than parameters"
    types = {bool: "bool", int: "int", float: "double", str: "string"}
    for row, spec in zip(rows, PARAMETERS):
        default = str(spec.default).lower() if isinstance(spec.default, bool) else (
            f'"{spec.default}"' if isinstance(spec.default, str) else str(spec.default))
        assert row[:3] == [f"`{spec.name}`", types[type(spec.default)], f"`{default}`"]
