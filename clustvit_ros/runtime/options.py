"""The engine's options: one frozen record, what each one means, and every check on them.

The node's parameters, ``clustvit bag``, ``clustvit eval``/``sweep`` and training's periodic
evaluation each fill an :class:`EngineOptions` and open it with ``Engine.from_options``; the ROS
parameter declarations and the command lines take their descriptions from :data:`DESCRIPTIONS`.
No torch here: ROS parameter declarations and the demo camera read this module, and torch costs
1–2 s and ~400 MB to import.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from typing import Any, Mapping, Sequence

DTYPE_NAMES = ("fp32", "fp16", "bf16")
RESIZE_POLICIES = ("fixed", "keep_aspect", "none")
MAX_INPUT_SIDE = 8192
_DEVICE_SPEC = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")

DESCRIPTIONS = {
    "checkpoint": "Model: a packaged model's name (camvid: real road scenes, CC BY-NC; synthetic: "
                  "synthetic robot scenes) or a .safetensors path; empty = camvid.",
    "device": "auto, cpu, cuda or cuda:N; a missing GPU falls back to the CPU with a warning.",
    "dtype": "Activation dtype.",
    "cuda_graphs": "GPU only: run the transformer blocks as CUDA graphs, one per token-count "
                   "bucket, all captured on the first frame of an input size (the warm-up frame). "
                   "Off by default: not yet measured on a GPU (make bench-gpu).",
    "input_size": "[H, W] the image is resized to for the model; [0, 0] = the model's training size.",
    "resize": "fixed: resize to input_size; keep_aspect: short side to min(input_size); none: native "
              "resolution.",
    "labels_file": "YAML with class names and colours; empty = the checkpoint's own.",
}
"""What each engine option means; the node's parameter table and the command lines' help say this."""


@dataclass(frozen=True)
class EngineOptions:
    """How to open an engine. Built with values that :func:`check` refuses, it raises ValueError.

    ``checkpoint``: a packaged model's name, a path, or empty for the default packaged model.
    ``input_size``: (H, W), or None (also ``[0, 0]``) for the model's training size.
    ``labels_file``: empty = the checkpoint's own class names and colours.
    """

    checkpoint: str = ""
    device: str = "auto"
    dtype: str = "fp32"
    input_size: tuple[int, int] | None = None
    resize: str = "fixed"
    labels_file: str = ""
    cuda_graphs: bool = False

    def __post_init__(self) -> None:
        size = self.input_size
        size = None if not size or list(size) == [0, 0] else tuple(int(v) for v in size)
        object.__setattr__(self, "input_size", size)
        object.__setattr__(self, "checkpoint", str(self.checkpoint))
        object.__setattr__(self, "labels_file", str(self.labels_file or ""))
        for f in fields(self):
            if reason := check(f.name, getattr(self, f.name)):
                raise ValueError(reason)

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> EngineOptions:
        """The options among `values` (the node's parameters, a command line's arguments); the
        others, and those that are None, keep their defaults."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names and v is not None})


def check(name: str, value: Any) -> str | None:
    """Why `value` is not acceptable for option `name`, or None when it is (or `name` is no option)."""
    if name == "device":
        return check_device_spec(value)
    if name == "dtype" and value not in DTYPE_NAMES:
        return f"dtype must be one of {', '.join(DTYPE_NAMES)}, not {value!r}"
    if name == "resize" and value not in RESIZE_POLICIES:
        return f"resize must be one of {', '.join(RESIZE_POLICIES)}, not {value!r}"
    if name == "input_size" and value is not None:
        return check_input_size(value)
    return None


def check_device_spec(spec: str) -> str | None:
    """Why `spec` is not a device spec (auto, cpu, cuda, cuda:N), or None when it is one."""
    if not isinstance(spec, str) or not _DEVICE_SPEC.match(spec):
        return f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', not {spec!r}"
    return None


def check_input_size(value: Sequence[int]) -> str | None:
    """Why `value` is not [H, W] with 1..MAX_INPUT_SIDE each, nor [0, 0]; None when it is one."""
    values = list(value)
    if len(values) != 2 or any(v < 0 or v > MAX_INPUT_SIDE for v in values) or (0 in values and values != [0, 0]):
        return f"input_size must be [H, W] with 1..{MAX_INPUT_SIDE} each, or [0, 0], got {values!r}"
    return None


def check_merge(budget: float, bias: float) -> str | None:
    """Why (merge_budget, merge_bias) are not a budget in [0, 1] and a finite bias; None when they are."""
    if not (isinstance(budget, (int, float)) and 0.0 <= budget <= 1.0):
        return f"merge_budget must lie in [0, 1], got {budget!r}"
    if not (isinstance(bias, (int, float)) and math.isfinite(bias)):
        return f"merge_bias must be finite, got {bias!r}"
    return None

