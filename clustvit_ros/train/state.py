"""Resumable training state: model, optimiser, scheduler, grad scaler, step and every RNG.

One ``torch.save`` file read back with ``weights_only=True`` (tensors and plain containers only).
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def save_state(path: str | Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               scheduler, scaler, step: int, config: dict[str, Any]) -> None:
    """Write the state after ``step`` completed steps (atomically: temp file, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                "step": step, "config": config, "rng": rng_state()}, tmp)
    os.replace(tmp, path)


def load_state(path: str | Path) -> dict[str, Any]:
    if not Path(path).is_file():
        raise ValueError(f"{path}: no training state to resume from")
    return torch.load(path, map_location="cpu", weights_only=True)
