"""Choose the device and dtype the engine runs on, degrading to what this machine has."""
from __future__ import annotations

import contextlib

import torch

from .options import DTYPE_NAMES, check, check_device_spec

DTYPES = dict(zip(DTYPE_NAMES, (torch.float32, torch.float16, torch.bfloat16)))


def resolve_device(spec: str) -> tuple[torch.device, list[str]]:
    """Turn a device spec into a device this machine has, plus the warnings a user must see.

    ``auto`` means the first CUDA device when there is one, else the CPU. A CUDA device that is not
    there falls back to the CPU with a warning rather than failing: a robot keeps segmenting.
    """
    reason = check_device_spec(spec)
    if reason:
        raise ValueError(reason)
    if spec == "cpu":
        return torch.device("cpu"), []
    if not torch.cuda.is_available():
        why = "torch was built without CUDA" if torch.version.cuda is None else "no CUDA device is visible"
        return torch.device("cpu"), [f"device '{spec}' requested but {why}: running on the CPU"]
    if spec == "auto":
        return torch.device("cuda:0"), []
    device = torch.device(spec)
    index = device.index or 0
    if index >= torch.cuda.device_count():
        return torch.device("cpu"), [
            f"device '{spec}' requested but only {torch.cuda.device_count()} CUDA device(s) exist: "
            "running on the CPU"]
    return torch.device("cuda", index), []


def resolve_dtype(name: str, device: torch.device) -> tuple[torch.dtype, list[str]]:
    """The activation dtype for `name` (fp32, fp16, bf16) on `device`, plus warnings.

    fp16 on the CPU is slow and partly unsupported in PyTorch, so it falls back to fp32 there.
    """
    if reason := check("dtype", name):
        raise ValueError(reason)
    if name == "fp16" and device.type == "cpu":
        return torch.float32, ["dtype 'fp16' is not supported on the CPU: running in fp32"]
    return DTYPES[name], []


def device_scope(device: torch.device) -> contextlib.AbstractContextManager:
    """A context that makes `device` the current CUDA device (nothing on the CPU).

    Streams, events and allocations that name no device follow the current one, which is cuda:0
    unless set: without this, work for cuda:N would be timed and synchronised on cuda:0's stream.
    """
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
