"""Optimiser and learning-rate schedule: SGD (momentum) or AdamW, poly decay, optional warm-up."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from .config import OptimConfig, ScheduleConfig


def build_optimizer(model: nn.Module, cfg: "OptimConfig") -> torch.optim.Optimizer:
    """SGD (the paper: momentum 0.9, no weight decay) or AdamW. With ``no_decay_norm_bias`` the
    biases, norms, position embedding, cls token and class embeddings get no weight decay."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        flat = p.ndim <= 1 or name.endswith(("pos_embed", "cls_token", "cls_emb"))
        (no_decay if cfg.no_decay_norm_bias and flat else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas))


def poly_factor(step: int, cfg: "ScheduleConfig", base_lr: float) -> float:
    """The lr multiplier at ``step`` (0-based): mmseg ``PolyLR`` from ``base_lr`` to ``min_lr``
    over ``iters`` steps (power ``power``), times a linear warm-up from ``warmup_ratio`` over the
    first ``warmup_iters`` steps."""
    t = min(step, cfg.iters) / cfg.iters
    floor = cfg.min_lr / base_lr
    factor = (1.0 - t) ** cfg.power * (1.0 - floor) + floor
    if step < cfg.warmup_iters:
        factor *= cfg.warmup_ratio + (1.0 - cfg.warmup_ratio) * step / cfg.warmup_iters
    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: "ScheduleConfig",
                    base_lr: float) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-iteration scheduler (call ``step()`` after every optimiser step)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: poly_factor(s, cfg, base_lr))
