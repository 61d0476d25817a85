"""Record live topics into a ROS 2 MCAP bag (what `ros2 bag record -s mcap` writes), from rclpy.

Subscriptions take the serialized CDR bytes (``raw=True``) and write them unchanged, with
rosbag2-compatible schemas (full ``.msg`` definitions, see ``msg_defs``), so the file plays with
``ros2 bag play`` and opens in Foxglove. Callbacks registered with :meth:`McapRecorder.on` also get
the deserialized message, for live analysis next to the recording (the demo's CSV and PNGs).
"""
from __future__ import annotations

import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

from mcap.writer import CompressionType, Writer
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message

from .msg_defs import message_definition, type_name_of


class McapRecorder:
    """Records `topics` ({topic: message class}) seen by `node` into the MCAP file `path`."""

    def __init__(self, node: Node, path: str | Path, topics: dict[str, type], qos: QoSProfile | None = None,
                 compression: CompressionType = CompressionType.ZSTD):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "wb")
        self._writer = Writer(self._file, compression=compression)
        self._writer.start(profile="ros2", library="clustvit_ros recorder")
        self._lock = threading.Lock()
        self._listeners: dict[str, list[Callable[[Any], None]]] = defaultdict(list)
        self._types = dict(topics)
        self.counts: dict[str, int] = {topic: 0 for topic in topics}
        self._closed = False
        qos = qos or QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        schema_ids: dict[str, int] = {}
        self._subscriptions = []
        for topic, msg_type in topics.items():
            name = type_name_of(msg_type)
            if name not in schema_ids:
                schema_ids[name] = self._writer.register_schema(
                    name, "ros2msg", message_definition(name).encode())
            channel = self._writer.register_channel(topic, "cdr", schema_ids[name])
            self._subscriptions.append(node.create_subscription(
                msg_type, topic, self._callback(topic, channel), qos, raw=True))

    def on(self, topic: str, callback: Callable[[Any], None]) -> None:
        """Also call `callback(message)` with each deserialized message of `topic`."""
        if topic not in self._types:
            raise KeyError(f"{topic} is not recorded")
        self._listeners[topic].append(callback)

    def _callback(self, topic: str, channel: int) -> Callable[[bytes], None]:
        def record(data: bytes) -> None:
            now = time.time_ns()
            with self._lock:
                if self._closed:
                    return
                self._writer.add_message(channel, log_time=now, data=data, publish_time=now,
                                         sequence=self.counts[topic])
                self.counts[topic] += 1
            if self._listeners.get(topic):
                msg = deserialize_message(data, self._types[topic])
                for listener in self._listeners[topic]:
                    listener(msg)
        return record

    def close(self) -> None:
        """Finish the file (summary and index); later messages are ignored."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._writer.finish()
            self._file.close()
