"""FrameStats crosses a process boundary over real DDS (loopback) with every field intact."""
import math
import time

from support import processes
from support.framestats_publisher import EXPECTED, FRAME_ID, STAMP


def test_framestats_from_another_process_arrives_intact(rclpy_context):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from clustvit_ros.msg import FrameStats

    received = []
    node = rclpy.create_node("framestats_listener", context=rclpy_context)
    node.create_subscription(FrameStats, "frame_stats", received.append, 10)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    publisher = processes.start_module("support.framestats_publisher", cwd=processes.REPO / "test")
    try:
        deadline = time.monotonic() + 30
        while not received and time.monotonic() < deadline and publisher.poll() is None:
            executor.spin_once(timeout_sec=0.1)
    finally:
        code, output = processes.stop(publisher)
        executor.shutdown()
        node.destroy_node()
    assert received, f"no FrameStats received from the publisher process; its output:\n{output}"
    assert code == 0, output
    msg = received[0]
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == STAMP
    assert msg.header.frame_id == FRAME_ID
    for name, value in EXPECTED.items():
        got = getattr(msg, name)
        if isinstance(value, float):
            assert math.isclose(got, value, rel_tol=1e-7), name
        else:
            assert got == value, name


def test_every_field_has_a_unit_comment():
    from clustvit_ros.msg import FrameStats
    from support.processes import REPO

    text = (REPO / "msg" / "FrameStats.msg").read_text()
    assert "2 FLOPs per multiply-add" in text
    for name in FrameStats.get_fields_and_field_types():
        if name == "header":
            continue
        line = next(l for l in text.splitlines() if l.split()[1:2] == [name])
        assert "#" in line and ("[" in line or name == "dense"), f"{name} has no unit comment"
