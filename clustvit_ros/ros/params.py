"""The node's parameters: declarations with descriptions and ranges, and their validation.

One table (`PARAMETERS`) is the source of truth for the node, the README's parameter table and the
launch-file tests. Live parameters apply to the next frame, in any lifecycle state. Configure
parameters are read by the lifecycle node's configure transition, so it accepts a change only while
it is unconfigured. The others are read-only (set at start-up) and rclpy rejects setting them with
a reason.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from ..runtime import options
from ..runtime.options import DESCRIPTIONS, DTYPE_NAMES, RESIZE_POLICIES
from .image_codec import DEFAULT_MAX_PIXELS

if TYPE_CHECKING:
    from ..model.budget import MergeBudget

RELIABILITIES = ("best_effort", "reliable", "system_default")


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    live: bool = False
    configure: bool = False  # read at configure; changeable while the node is unconfigured
    range: tuple[float, float] | None = None
    choices: tuple[str, ...] | None = None


PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("merge_budget", 1.0, "Share of patch tokens that may be merged: at most floor(budget*P) "
              "tokens with the largest merge margin. 0 = dense ViT (no merging), 1 = the model's own "
              "decision (the paper's behaviour). With latency_target_ms on, the least merging used.",
              live=True, range=(0.0, 1.0)),
    ParamSpec("merge_bias", 0.0, "Added to every token's merge margin (logits): > 0 merges more than "
              "the model would, < 0 less. With latency_target_ms on, the least used.", live=True,
              range=(-20.0, 20.0)),
    ParamSpec("latency_target_ms", 0.0, "Hold each frame's latency (received to published, FrameStats "
              "latency_ms) at or under this: the node merges more than merge_budget and merge_bias ask "
              "(budget up to 1, then bias up to merge_bias + 6) only while the target "
              "needs it. FrameStats carry what each frame used, /diagnostics the state. 0 = off.",
              live=True, range=(0.0, 60000.0)),
    ParamSpec("enabled", True, "Process frames; false keeps the subscription but runs nothing.", live=True),
    ParamSpec("overlay_alpha", 0.5, "Weight of the colourised mask in ~/overlay.", live=True, range=(0.0, 1.0)),
    ParamSpec("publish_mask_color", True, "Publish ~/mask_color (computed only while subscribed).", live=True),
    ParamSpec("publish_overlay", True, "Publish ~/overlay (computed only while subscribed).", live=True),
    ParamSpec("publish_plot_topics", True, "Publish ~/gflops and ~/latency_ms (only while subscribed).",
              live=True),
    ParamSpec("checkpoint", "", DESCRIPTIONS["checkpoint"], configure=True),
    ParamSpec("device", "auto", DESCRIPTIONS["device"], configure=True),
    ParamSpec("dtype", "fp32", DESCRIPTIONS["dtype"], configure=True, choices=DTYPE_NAMES),
    ParamSpec("cuda_graphs", False, DESCRIPTIONS["cuda_graphs"], configure=True),
    ParamSpec("threads", 0, "CPU threads for inference (torch intra-op); 0 = follow the load: one per "
              "core that other processes leave free, re-decided every 0.5 s (busy cores make waiting "
              "threads spin against them); N = exactly N.", configure=True, range=(0, 1024)),
    ParamSpec("input_size", [0, 0], DESCRIPTIONS["input_size"], configure=True),
    ParamSpec("resize", "fixed", DESCRIPTIONS["resize"], configure=True, choices=RESIZE_POLICIES),
    ParamSpec("labels_file", "", DESCRIPTIONS["labels_file"], configure=True),
    ParamSpec("compressed", False, "Subscribe to image/compressed (JPEG/PNG) instead of image.", configure=True),
    ParamSpec("qos_reliability", "best_effort", "Input QoS reliability (default: the sensor-data profile).",
              configure=True, choices=RELIABILITIES),
    ParamSpec("qos_depth", 1, "Input QoS queue depth.", configure=True, range=(1, 100)),
    ParamSpec("max_image_pixels", DEFAULT_MAX_PIXELS, "Larger input images are rejected as malformed "
              "(compressed ones from their header, before decoding); the default fits a 12 MP camera.",
              configure=True, range=(1, 1_073_741_824)),
    ParamSpec("diagnostics_period", 1.0, "Seconds between /diagnostics messages.", range=(0.1, 60.0)),
    ParamSpec("autostart", True, "Configure and activate at start-up, as a plain node; false: start "
              "unconfigured and wait for a lifecycle manager (ros2 lifecycle set)."),
)
SPECS = {spec.name: spec for spec in PARAMETERS}


@dataclass(frozen=True)
class LiveSettings:
    """The live parameters as one immutable value, swapped atomically and read once per frame."""

    merge_budget: float = 1.0
    merge_bias: float = 0.0
    latency_target_ms: float = 0.0
    enabled: bool = True
    overlay_alpha: float = 0.5
    publish_mask_color: bool = True
    publish_overlay: bool = True
    publish_plot_topics: bool = True

    def updated(self, changes: dict[str, Any]) -> LiveSettings:
        names = {f.name for f in fields(self)}
        return replace(self, **{k: v for k, v in changes.items() if k in names})

    @property
    def budget(self) -> MergeBudget:
        """The merge budget these settings set."""
        from ..model.budget import MergeBudget  # here: importing the model package imports torch

        return MergeBudget(self.merge_budget, self.merge_bias)


def descriptor(spec: ParamSpec) -> ParameterDescriptor:
    """The rclpy descriptor for `spec` (type from the default, range, read-only when set at start-up)."""
    read_only = not (spec.live or spec.configure)
    text = spec.description + (" (read-only: set at start-up)" if read_only else
                               " (applied at configure: change it while the node is unconfigured)"
                               if spec.configure else "")
    if spec.choices:
        text += f" One of: {', '.join(spec.choices)}."
    desc = ParameterDescriptor(description=text, read_only=read_only)
    if spec.range and isinstance(spec.default, float):
        desc.floating_point_range = [FloatingPointRange(from_value=float(spec.range[0]),
                                                        to_value=float(spec.range[1]))]
    elif spec.range and isinstance(spec.default, int) and not isinstance(spec.default, bool):
        desc.integer_range = [IntegerRange(from_value=int(spec.range[0]), to_value=int(spec.range[1]), step=1)]
    return desc


def check(name: str, value: Any) -> str | None:
    """Why `value` is not acceptable for parameter `name`, or None when it is."""
    spec = SPECS.get(name)
    if spec is None:
        return None
    if isinstance(spec.default, float) and (not isinstance(value, float) or not math.isfinite(value)):
        return f"{name} must be a finite floating-point number, got {value!r}"
    if spec.range and not spec.range[0] <= value <= spec.range[1]:
        return f"{name} must lie in [{spec.range[0]}, {spec.range[1]}], got {value!r}"
    if spec.choices and value not in spec.choices:
        return f"{name} must be one of {', '.join(spec.choices)}, got {value!r}"
    return options.check(name, value)
