"""The engine's option names (device, dtype, resize policy), checked without importing torch.

ROS parameter declarations and the demo camera read these; keeping them torch-free keeps torch
(1–2 s and ~400 MB to import) out of every process that only validates names.
"""
from __future__ import annotations

import re

DTYPE_NAMES = ("fp32", "fp16", "bf16")
RESIZE_POLICIES = ("fixed", "keep_aspect", "none")
_DEVICE_SPEC = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def check_device_spec(spec: str) -> str | None:
    """Return why `spec` is not a device spec (auto, cpu, cuda, cuda:N), or None when it is one."""
    if not _DEVICE_SPEC.match(spec):
        return f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', not {spec!r}"
    return None
