"""Publish one known FrameStats on `frame_stats` every 50 ms until SIGINT (a test's other process)."""
import sys

import rclpy
from rclpy.executors import ExternalShutdownException

from clustvit_ros.msg import FrameStats

EXPECTED = {
    "gflops": 12.5, "dense_gflops": 25.25, "latency_ms": 31.5, "queue_ms": 0.75,
    "preprocess_ms": 1.5, "inference_ms": 27.0, "postprocess_ms": 2.25, "stamp_age_ms": 40.125,
    "patch_tokens": 1024, "kept_tokens": 400, "merged_tokens": 624, "clusters_used": 3,
    "dense": True, "merge_budget": 0.5, "merge_bias": -1.25, "frames_dropped": 2**40 + 3,
}
STAMP = (1_700_000_000, 123_456_789)
FRAME_ID = "camera_optical_frame"


def make_message() -> FrameStats:
    msg = FrameStats()
    msg.header.stamp.sec, msg.header.stamp.nanosec = STAMP
    msg.header.frame_id = FRAME_ID
    for name, value in EXPECTED.items():
        setattr(msg, name, value)
    return msg


def main() -> int:
    rclpy.init(args=sys.argv)
    node = rclpy.create_node("framestats_publisher")
    publisher = node.create_publisher(FrameStats, "frame_stats", 10)
    msg = make_message()
    node.create_timer(0.05, lambda: publisher.publish(msg))
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
