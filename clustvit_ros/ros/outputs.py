"""The node's per-frame outputs: mask, the mask's camera_info, colour mask, overlay, FrameStats and
the plot topics, each carrying the input image's header."""
from __future__ import annotations

from rclpy.lifecycle import LifecycleNode
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Float32

from clustvit_ros.msg import FrameStats

from ..runtime.frame import Frame
from .camera_info import camera_info_for
from .image_codec import numpy_to_image
from .params import LiveSettings


class Outputs:
    """Lifecycle publishers, created at configure: they publish only while the node is active.

    The colour mask, the overlay and the plot topics are computed only while someone subscribes.
    """

    def __init__(self, node: LifecycleNode) -> None:
        self._node = node
        create = node.create_lifecycle_publisher
        self._mask = create(Image, "~/mask", 1)
        self._info = create(CameraInfo, "~/camera_info", 1)
        self._color = create(Image, "~/mask_color", 1)
        self._overlay = create(Image, "~/overlay", 1)
        self._stats = create(FrameStats, "~/stats", 10)
        self._gflops = create(Float32, "~/gflops", 10)
        self._latency = create(Float32, "~/latency_ms", 10)

    def publish_images(self, frame: Frame, header, camera_info: CameraInfo | None, settings: LiveSettings) -> None:
        """The mask, the newest camera_info with the mask's header and size, and the wanted colour images."""
        self._mask.publish(numpy_to_image(frame.mask, "mono8", header))
        if camera_info is not None:  # the newest: calibration rarely changes
            height, width = frame.mask.shape
            self._info.publish(camera_info_for(camera_info, header, width, height))
        if settings.publish_mask_color and self._color.get_subscription_count() > 0:
            self._color.publish(numpy_to_image(frame.color, "rgb8", header))
        if settings.publish_overlay and self._overlay.get_subscription_count() > 0:
            self._overlay.publish(numpy_to_image(frame.overlay(settings.overlay_alpha), "rgb8", header))

    def publish_cost(self, stats: FrameStats, settings: LiveSettings) -> None:
        """FrameStats, and its GFLOPs and latency on the plot topics."""
        self._stats.publish(stats)
        if settings.publish_plot_topics:
            if self._gflops.get_subscription_count() > 0:
                self._gflops.publish(Float32(data=float(stats.gflops)))
            if self._latency.get_subscription_count() > 0:
                self._latency.publish(Float32(data=float(stats.latency_ms)))

    def destroy(self) -> None:
        for publisher in (self._mask, self._info, self._color, self._overlay, self._stats, self._gflops,
                          self._latency):
            self._node.destroy_lifecycle_publisher(publisher)
