"""~/camera_info: the camera's calibration republished with each mask's header, scaled to the mask."""
from __future__ import annotations

import time

import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, RegionOfInterest
from std_msgs.msg import Header

from clustvit_ros.ros.camera_info import camera_info_for, camera_info_topic
from support.models import make_checkpoint
from support.node_process import running_node
from support.ros_harness import rgb_image

K = [400.0, 0.0, 320.0, 0.0, 410.0, 240.0, 0.0, 0.0, 1.0]
P = [400.0, 0.0, 320.0, -20.0, 0.0, 410.0, 240.0, 0.0, 0.0, 0.0, 1.0, 0.0]


def _info(width: int = 640, height: int = 480, **fields) -> CameraInfo:
    info = CameraInfo(width=width, height=height, distortion_model="plumb_bob", d=[0.1, -0.2, 0.0, 0.0, 0.0],
                      k=K, p=P, **fields)
    info.header.frame_id = "camera_info_frame"
    return info


def _header(sec: int, frame_id: str = "mask_frame") -> Header:
    header = Header(frame_id=frame_id)
    header.stamp.sec = sec
    return header


@pytest.mark.parametrize("image,expected", [("image", "/ns/camera_info"), ("/cam/image_raw", "/cam/camera_info"),
                                            ("/a/b/color/image_rect", "/a/b/color/camera_info")])
def test_the_camera_info_topic_is_the_image_topics_sibling(image, expected):
    resolved = image if image.startswith("/") else f"/ns/{image}"
    assert camera_info_topic(resolved) == expected


def test_same_size_changes_only_the_header():
    out = camera_info_for(_info(), _header(7), 640, 480)
    assert (out.header.stamp.sec, out.header.frame_id) == (7, "mask_frame")
    assert (out.width, out.height, list(out.k), list(out.p)) == (640, 480, K, P)
    assert list(out.d) == [0.1, -0.2, 0.0, 0.0, 0.0] and out.distortion_model == "plumb_bob"


def test_a_smaller_mask_scales_the_intrinsics():
    out = camera_info_for(_info(), _header(7), 320, 120)
    assert (out.width, out.height) == (320, 120)
    assert list(out.k) == [200.0, 0.0, 160.0, 0.0, 102.5, 60.0, 0.0, 0.0, 1.0]
    assert list(out.p) == [200.0, 0.0, 160.0, -10.0, 0.0, 102.5, 60.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    assert list(out.d) == [0.1, -0.2, 0.0, 0.0, 0.0]  # distortion is in normalised coordinates


def test_binning_and_roi_are_folded_into_the_intrinsics():
    roi = RegionOfInterest(x_offset=100, y_offset=40, width=400, height=300)
    info = _info(binning_x=2, binning_y=2, roi=roi)
    assert list(camera_info_for(info, _header(1), 200, 150).k) == K  # already the size it describes
    out = camera_info_for(info, _header(1), 100, 75)  # a quarter of the ROI
    assert (out.binning_x, out.binning_y, out.roi.width, out.roi.height) == (0, 0, 0, 0)
    assert list(out.k) == [100.0, 0.0, 55.0, 0.0, 102.5, 50.0, 0.0, 0.0, 1.0]
    assert (out.width, out.height) == (100, 75)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("model") / "tiny.safetensors")


def _publish_info(h, topic: str, info: CameraInfo):
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    pub = h.node.create_publisher(CameraInfo, topic, reliable)
    h.wait_for(pub.get_subscription_count, 30, f"the node to subscribe to {topic}")
    return lambda: pub.publish(info)


@pytest.mark.parametrize("image_topic", [None, "/cam_remapped/image_raw"], ids=["default", "remapped"])
def test_the_node_republishes_camera_info_with_the_masks_header(checkpoint, image_topic):
    with running_node(f"checkpoint:={checkpoint}", tag="info", outputs=("mask", "camera_info"),
                      image_topic=image_topic) as (_, h):
        ns = h.fqn.rsplit("/", 1)[0]
        send_info = _publish_info(h, camera_info_topic(image_topic or f"{ns}/image"), _info(64, 48))
        image = rgb_image(48, 64)

        def send():
            send_info()
            h.publish(image, (30, 5), frame_id="camera_optical")

        info = h.output_for("camera_info", (30, 5), 60, republish=send)
        mask = h.output_for("mask", (30, 5))
        assert info.header == mask.header and info.header.frame_id == "camera_optical"
        assert (info.width, info.height, list(info.k)) == (mask.width, mask.height, K)


def test_the_node_scales_camera_info_to_the_mask(checkpoint):
    with running_node(f"checkpoint:={checkpoint}", tag="infoscale", outputs=("mask", "camera_info")) as (_, h):
        ns = h.fqn.rsplit("/", 1)[0]
        send_info = _publish_info(h, f"{ns}/camera_info", _info(640, 480))  # the camera's full resolution
        image = rgb_image(120, 160)

        def send():
            send_info()
            h.publish(image, (31, 0))

        info = h.output_for("camera_info", (31, 0), 60, republish=send)
        assert (info.width, info.height) == (160, 120)
        assert list(info.k) == [100.0, 0.0, 80.0, 0.0, 102.5, 60.0, 0.0, 0.0, 1.0]


def test_no_camera_info_without_one_from_the_camera(checkpoint):
    with running_node(f"checkpoint:={checkpoint}", tag="noinfo", outputs=("mask", "camera_info")) as (_, h):
        image = rgb_image(48, 64)
        h.output_for("mask", (32, 0), 60, republish=lambda: h.publish(image, (32, 0)))
        for i in range(1, 4):
            h.output_for("mask", (32, i), 60, republish=lambda i=i: h.publish(image, (32, i)))
        time.sleep(1.0)
        assert not h.messages("camera_info")
