"""Single-process or ``torchrun`` multi-process training: process group, device, rank-0 helpers.

``torchrun --nproc_per_node N -m clustvit_ros.cli train ...`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and the rendezvous variables; each process then trains on ``cuda:LOCAL_RANK``
(NCCL) or on the CPU (gloo). Without them, training runs in this one process.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..runtime.device import resolve_device


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    device: torch.device
    warnings: tuple[str, ...] = ()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return dist.is_available() and dist.is_initialized()


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the ``torchrun`` process group when launched by it (once), else run alone.

    ``device`` is resolved like the engine's (``auto``: a GPU if there is one; ``cpu``, ``cuda``,
    ``cuda:N``: a missing GPU falls back to the CPU with a warning). Under torchrun each rank
    takes ``cuda:LOCAL_RANK``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    resolved, warnings = resolve_device(device)
    if device == "auto":  # falling back to the CPU is what "auto" means: nothing to warn about
        warnings = []
    if world <= 1 and not dist.is_initialized():
        return DistInfo(0, 1, resolved, tuple(warnings))
    if resolved.type == "cuda":
        resolved = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(resolved)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if resolved.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), resolved, tuple(warnings))


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def all_mean(value: float, info: DistInfo) -> float:
    """The mean of a scalar over all ranks (itself when alone)."""
    if not info.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64,
                     device=info.device if info.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return float(t) / info.world_size
