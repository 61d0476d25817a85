"""A stand-in camera: the packaged CamVid road frames, synthetic robot scenes, a folder of images or a
video file, published at a set rate.

``ros2 run clustvit_ros demo_camera`` publishes ``image_raw`` (sensor_msgs/Image; and
``image_raw/compressed`` with ``publish_compressed``) stamped with the node clock's *now* (sim time
under ``use_sim_time``) and the configured ``frame_id``, like a camera driver. Synthetic scenes come
from ``data.synthetic.render_scene``: each is rendered once at twice the width and a window pans
across it, so the stream moves like a camera turning over a field, then cuts to the next scene.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import cv2
import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CompressedImage, Image

from ..data.files import IMAGE_FILE_LIMIT, read_bytes
from ..data.image_bytes import decode
from ..data.synthetic_render import render_scene
from ..runtime.packaged import SAMPLE_FRAMES, share_path
from .image_codec import numpy_to_image, rgb8_to_compressed
from .params import ParamSpec, descriptor
from .share import share_dirs
from .stop_signal import StopSignal

NODE_NAME = "demo_camera"
SYNTHETIC_SIZE = (640, 480)  # width, height of synthetic scenes when width/height are 0
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
RELIABILITY = {"reliable": ReliabilityPolicy.RELIABLE, "best_effort": ReliabilityPolicy.BEST_EFFORT}

PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("source", "camvid", "camvid (the packaged CamVid val frames, real road scenes), synthetic "
              "(rendered robot scenes), a folder of images (sorted by name) or a video file (anything "
              "OpenCV's VideoCapture reads)."),
    ParamSpec("rate", 10.0, "Frames published per second.", range=(0.1, 240.0)),
    ParamSpec("width", 0, "Image width: frames are resized to width x height; 0 keeps the native size "
              "(synthetic scenes: 640 x 480).", range=(0, 8192)),
    ParamSpec("height", 0, "Image height (as width).", range=(0, 8192)),
    ParamSpec("frame_id", "camera_optical_frame", "header.frame_id of every image."),
    ParamSpec("encoding", "rgb8", "Encoding of image_raw.", choices=("rgb8", "bgr8")),
    ParamSpec("publish_compressed", False, "Also publish image_raw/compressed (JPEG)."),
    ParamSpec("loop", True, "Folder/video: start again after the last frame; false: exit (code 0) "
              "after it."),
    ParamSpec("scenes", 4, "Synthetic: number of distinct scenes, rendered once at start-up.", range=(1, 1000)),
    ParamSpec("frames_per_scene", 50, "Synthetic: frames spent panning across one scene before the "
              "next.", range=(1, 100000)),
    ParamSpec("seed", 0, "Synthetic: random seed of the scenes.", range=(0, 2**31 - 1)),
    ParamSpec("qos_reliability", "reliable", "Publisher reliability (reliable also serves best-effort "
              "subscribers).", choices=tuple(RELIABILITY)),
)


class SourceError(RuntimeError):
    """The configured source cannot be opened or read."""


class SyntheticSource:
    """Rendered robot scenes; a window pans across each (rendered twice as wide) and back."""

    def __init__(self, width: int, height: int, scenes: int, frames_per_scene: int, seed: int, log=None):
        self.width, self.frames_per_scene = width, frames_per_scene
        if log:
            log(f"rendering {scenes} synthetic scene(s) of {2 * width}x{height}")
        rng = np.random.default_rng(seed)
        self.panoramas = [render_scene(rng, (height, 2 * width))[0] for _ in range(scenes)]
        self.index = 0

    def next(self) -> np.ndarray | None:
        scene, step = divmod(self.index, self.frames_per_scene)
        self.index += 1
        pano = self.panoramas[scene % len(self.panoramas)]
        phase = step / max(1, self.frames_per_scene - 1)      # 0 .. 1 over the scene
        x = round((0.5 - 0.5 * math.cos(math.pi * phase)) * (pano.shape[1] - self.width))  # eased pan
        return pano[:, x:x + self.width]


class FolderSource:
    """The images of a folder in name order (RGB), optionally resized."""

    def __init__(self, folder: Path, size: tuple[int, int], loop: bool):
        self.files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise SourceError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {folder}")
        self.size, self.loop, self.index = size, loop, 0

    def next(self) -> np.ndarray | None:
        for _ in range(len(self.files)):
            if self.index >= len(self.files):
                if not self.loop:
                    return None
                self.index = 0
            path = self.files[self.index]
            self.index += 1
            try:  # within the bounds of a data set image (size, pixels); else skipped like a broken one
                bgr = decode(read_bytes(path, IMAGE_FILE_LIMIT), flags=cv2.IMREAD_COLOR, camera=False)
            except (OSError, ValueError):
                continue
            return _resized(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self.size)
        raise SourceError(f"none of the {len(self.files)} images in {self.files[0].parent} can be read")


class VideoSource:
    """The frames of a video file (RGB), optionally resized."""

    def __init__(self, path: Path, size: tuple[int, int], loop: bool):
        self.path, self.size, self.loop = path, size, loop
        self.capture = cv2.VideoCapture(str(path))
        if not self.capture.isOpened():
            raise SourceError(f"OpenCV cannot open video {path}")
        self.frames = 0

    def next(self) -> np.ndarray | None:
        ok, bgr = self.capture.read()
        if not ok:
            if not self.frames:
                raise SourceError(f"video {self.path} has no readable frames")
            if not self.loop:
                return None
            self.capture.release()
            self.capture = cv2.VideoCapture(str(self.path))
            self.frames = 0
            ok, bgr = self.capture.read()
            if not ok:
                raise SourceError(f"video {self.path} cannot be read again from the start")
        self.frames += 1
        return _resized(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self.size)


def _resized(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    width, height = size
    if not width or not height or (rgb.shape[1], rgb.shape[0]) == (width, height):
        return rgb
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)


def open_source(p: dict, log=None):
    """The frame source named by the parameters `p`."""
    source = p["source"]
    size = (p["width"], p["height"])
    if source == "camvid":
        source = str(share_path(SAMPLE_FRAMES, *share_dirs()))
    if source == "synthetic":
        width, height = (p["width"], p["height"]) if p["width"] and p["height"] else SYNTHETIC_SIZE
        return SyntheticSource(width, height, p["scenes"], p["frames_per_scene"], p["seed"], log)
    path = Path(source).expanduser()
    if path.is_dir():
        return FolderSource(path, size, p["loop"])
    if path.is_file():
        return VideoSource(path, size, p["loop"])
    raise SourceError(f"source {source!r} is neither 'camvid', 'synthetic' nor an existing folder or "
                      "video file")


class DemoCamera(Node):
    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        for spec in PARAMETERS:
            self.declare_parameter(spec.name, spec.default, descriptor(spec))
        p = {spec.name: self.get_parameter(spec.name).value for spec in PARAMETERS}
        for spec in PARAMETERS:
            value = p[spec.name]
            if spec.range and not spec.range[0] <= value <= spec.range[1]:
                raise SourceError(f"{spec.name} must lie in [{spec.range[0]}, {spec.range[1]}], got {value}")
            if spec.choices and value not in spec.choices:
                raise SourceError(f"{spec.name} must be one of {', '.join(spec.choices)}, got {value!r}")
        self.frame_id, self.encoding = p["frame_id"], p["encoding"]
        self.source = open_source(p, self.get_logger().info)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2, reliability=RELIABILITY[p["qos_reliability"]])
        self.pub = self.create_publisher(Image, "image_raw", qos)
        self.pub_compressed = (self.create_publisher(CompressedImage, "image_raw/compressed", qos)
                               if p["publish_compressed"] else None)
        self.published = 0
        self.finished = False
        self.create_timer(1.0 / p["rate"], self._tick)
        self.get_logger().info(f"publishing {self.resolve_topic_name('image_raw')} from {p['source']} "
                               f"at {p['rate']:g} Hz, frame_id {self.frame_id!r}")

    def _tick(self) -> None:
        if self.finished:
            return
        rgb = self.source.next()
        if rgb is None:
            self.get_logger().info(f"end of the source after {self.published} frames")
            self.finished = True
            return
        header = Image().header
        header.stamp = self.get_clock().now().to_msg()
        header.frame_id = self.frame_id
        array = rgb if self.encoding == "rgb8" else np.ascontiguousarray(rgb[..., ::-1])
        self.pub.publish(numpy_to_image(array, self.encoding, header))
        if self.pub_compressed is not None:
            self.pub_compressed.publish(rgb8_to_compressed(rgb, "jpeg", header))
        self.published += 1


def main(args: list[str] | None = None, stop: StopSignal | None = None) -> int:
    """Entry point of `ros2 run clustvit_ros demo_camera`; `args` go to rclpy (--ros-args ...).

    SIGINT/SIGTERM only set `stop` (the script installs it before its imports), which the loop
    polls, and are ignored once the camera is ending, so any number of them at any moment ends it
    with code 0. rclpy gets a context of its own and installs no signal handlers.
    """
    stop = stop or StopSignal().install()
    context = Context()
    rclpy.init(args=args, context=context, signal_handler_options=SignalHandlerOptions.NO)
    try:
        node = DemoCamera(context=context)
    except (SourceError, OSError, ValueError) as exc:
        rclpy.logging.get_logger(NODE_NAME).fatal(f"cannot start: {exc}")
        code = 1
    else:
        code = _publish_until_stopped(node, stop)
    stop.ignore_further()
    rclpy.try_shutdown(context=context)
    return code


def _publish_until_stopped(node: DemoCamera, stop: StopSignal) -> int:
    """Spin `node` until `stop` or the end of its source; destroys it. Returns the exit code."""
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    try:
        while not stop.requested and not node.finished:
            executor.spin_once(timeout_sec=0.1)
    except SourceError as exc:
        node.get_logger().fatal(str(exc))
        return 1
    finally:
        executor.shutdown()
        node.destroy_node()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
