"""A test-side ROS participant: publishes images, collects outputs, sets parameters, over real DDS."""
from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any, Callable

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter, parameter_value_to_python
from rclpy.parameter_client import AsyncParameterClient
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Float32

from clustvit_ros.msg import FrameStats
from clustvit_ros.ros.image_codec import numpy_to_image

OUTPUTS = {"mask": Image, "mask_color": Image, "overlay": Image, "stats": FrameStats,
           "gflops": Float32, "latency_ms": Float32, "camera_info": CameraInfo}


class Harness:
    """Talks to one clustvit node `node_fqn` (e.g. /t123/clustvit) from the test process."""

    def __init__(self, context, node_fqn: str, outputs=("mask", "stats"), image_topic: str | None = None,
                 publisher_depth: int = 10):
        self.node = rclpy.create_node(f"harness_{abs(hash(node_fqn)) % 10**6}", context=context)
        self.fqn = node_fqn
        ns = node_fqn.rsplit("/", 1)[0]
        self.received: dict[str, list] = defaultdict(list)
        self._lock = threading.Lock()
        for name in outputs:
            self.node.create_subscription(OUTPUTS[name], f"{node_fqn}/{name}", self._collector(name), 10)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._collector("diagnostics"), 10)
        reliable = QoSProfile(depth=publisher_depth, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = self.node.create_publisher(Image, image_topic or f"{ns}/image", reliable)
        self.compressed_pub = self.node.create_publisher(CompressedImage, f"{ns}/image/compressed", reliable)
        self.params = AsyncParameterClient(self.node, node_fqn)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def _collector(self, name: str) -> Callable[[Any], None]:
        def collect(msg):
            with self._lock:
                self.received[name].append(msg)
        return collect

    def messages(self, name: str) -> list:
        with self._lock:
            return list(self.received[name])

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.02)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until the node's parameter service answers and it subscribes to our image topic."""
        self.wait_for(lambda: self.params.wait_for_services(timeout_sec=0.5), timeout, "parameter services")
        self.wait_for(lambda: self.image_pub.get_subscription_count() + self.compressed_pub.get_subscription_count(),
                      timeout, "the node to subscribe to the image topic")

    def publish(self, msg, stamp: tuple[int, int], frame_id: str = "camera") -> None:
        msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
        msg.header.frame_id = frame_id
        (self.compressed_pub if isinstance(msg, CompressedImage) else self.image_pub).publish(msg)

    def output_for(self, name: str, stamp: tuple[int, int], timeout: float = 30.0, republish=None):
        """The first `name` message stamped `stamp`; `republish()` is called every 2 s while waiting."""
        def find():
            return next((m for m in self.messages(name)
                         if (m.header.stamp.sec, m.header.stamp.nanosec) == stamp), None)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if republish:
                republish()
            try:
                return self.wait_for(find, min(2.0, deadline - time.monotonic()), f"{name} stamped {stamp}")
            except AssertionError:
                continue
        raise AssertionError(f"no {name} stamped {stamp} within {timeout} s")

    def set(self, **values) -> list:
        """Set parameters through the node's service; returns the SetParametersResult list."""
        params = [Parameter(name, value=value) for name, value in values.items()]
        future = self.params.set_parameters(params)
        self.wait_for(future.done, 15.0, "set_parameters")
        return future.result().results

    def get(self, *names: str) -> list:
        future = self.params.get_parameters(list(names))
        self.wait_for(future.done, 15.0, "get_parameters")
        return [parameter_value_to_python(v) for v in future.result().values]

    def diagnostics_value(self, key: str) -> str | None:
        for array in reversed(self.messages("diagnostics")):
            for status in array.status:
                if status.name.startswith(self.fqn):
                    return next((kv.value for kv in status.values if kv.key == key), None)
        return None

    def close(self) -> None:
        self.executor.shutdown()
        self._thread.join(timeout=5)
        self.node.destroy_node()


def rgb_image(height: int = 80, width: int = 100, seed: int = 0, encoding: str = "rgb8") -> Image:
    rng = np.random.default_rng(seed)
    return numpy_to_image(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), encoding)
