"""The bag `clustvit bag` writes: every original schema, channel and message, plus one channel per
segmentation output; written beside OUTPUT and renamed over it only once it is complete.

Needs mcap and mcap-ros2-support (imported by ``clustvit bag`` when it runs, not for its help).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np
from mcap.writer import CompressionType, Writer
from mcap_ros2._dynamic import serialize_dynamic  # the encoder mcap_ros2.writer.Writer uses

from .msg_defs import message_definition

COMPRESSION = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}


@contextmanager
def replacing(output: Path) -> Iterator[BinaryIO]:
    """A new file beside `output` (permissions as the umask says), renamed over it when the block
    ends normally and removed when it fails: a failed run leaves a previous `output` untouched."""
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.{os.getpid()}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.replace(partial, output)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


class OutputBag:
    """An MCAP writer holding the input bag's schemas and channels and the new `outputs`
    (name -> (topic, message type)); messages are CDR-encoded with full ROS definitions."""

    def __init__(self, f: BinaryIO, profile: str, compression: str, info, outputs: dict[str, tuple[str, str]]):
        self.writer = Writer(f, compression=COMPRESSION[compression])
        self.writer.start(profile=profile or "ros2", library="clustvit_ros clustvit bag")
        schema_ids = {s.id: self.writer.register_schema(s.name, s.encoding, s.data) for s in info.schemas.values()}
        self.channel_ids = {c.id: self.writer.register_channel(c.topic, c.message_encoding,
                                                               schema_ids.get(c.schema_id, 0), dict(c.metadata))
                            for c in info.channels.values()}
        existing = {s.name: schema_ids[s.id] for s in info.schemas.values() if s.encoding == "ros2msg"}
        self.encoders, self.channels, self.topics = {}, {}, {}
        for name, (topic, type_name) in outputs.items():
            definition = message_definition(type_name)
            if type_name not in existing:
                existing[type_name] = self.writer.register_schema(type_name, "ros2msg", definition.encode())
            self.encoders[name] = serialize_dynamic(type_name, definition)[type_name]
            self.channels[name] = self.writer.register_channel(topic, "cdr", existing[type_name])
            self.topics[name] = topic
        self.written = {topic: 0 for topic in self.topics.values()}

    def wants(self, name: str) -> bool:
        return name in self.encoders

    def copy(self, channel_id: int, message) -> None:
        """An input message, unchanged, on its own channel."""
        self.writer.add_message(self.channel_ids[channel_id], message.log_time, message.data,
                                message.publish_time, message.sequence)

    def encode(self, name: str, value: dict) -> bytes:
        return self.encoders[name](value)

    def encode_image(self, name: str, header: dict, array: np.ndarray) -> bytes:
        """An HxW (mono8) or HxWx3 (rgb8) uint8 array as a sensor_msgs/Image for output `name`."""
        height, width = array.shape[:2]
        channels = 1 if array.ndim == 2 else array.shape[2]
        return self.encode(name, {"header": header, "height": height, "width": width,
                                  "encoding": "mono8" if channels == 1 else "rgb8", "is_bigendian": 0,
                                  "step": width * channels, "data": array.tobytes()})

    def write(self, encoded: dict[str, bytes], image_message, sequence: int) -> None:
        """Each encoded output at the log and publish time of the image it came from."""
        for name, data in encoded.items():
            self.writer.add_message(self.channels[name], image_message.log_time, data,
                                    image_message.publish_time, sequence)
            self.written[self.topics[name]] += 1

    def finish(self) -> None:
        self.writer.finish()
