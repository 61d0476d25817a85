"""What the node's configure transition makes, as one immutable value."""
from __future__ import annotations

from dataclasses import dataclass

from rclpy.qos import QoSProfile

from ..runtime.engine import Engine
from ..runtime.latency_target import LatencyTarget
from ..runtime.threads import InferenceThreads
from .outputs import Outputs


@dataclass(frozen=True)
class Configured:
    """The model, the publishers, the inference policies and the input settings of one configure.

    Made by configure and dropped by cleanup, swapped whole like the live settings: a frame reads it
    once and runs with that one, whatever a transition does meanwhile. The policies keep their own
    state from frame to frame; only the inference thread runs them.
    """

    engine: Engine
    outputs: Outputs
    threads: InferenceThreads
    latency_target: LatencyTarget
    qos: QoSProfile
    compressed: bool   # subscribe to image/compressed instead of image
    max_pixels: int    # larger input images are rejected
    model_info: str    # for logs and diagnostics

    @property
    def dtype_name(self) -> str:
        return str(self.engine.dtype).removeprefix("torch.")
