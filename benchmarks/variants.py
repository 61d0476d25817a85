"""Random-weight ViT-T/S/B/L ClustViT checkpoints for the benchmarks, in the project's real format."""
from __future__ import annotations

from pathlib import Path

LABELS = {"tiny": "ViT-T", "small": "ViT-S", "base": "ViT-B", "large": "ViT-L"}


def variant_checkpoint(variant: str, path: Path, num_classes: int = 150, head: str = "mask",
                       size: int = 512) -> Path:
    """Save a seeded random-weight `variant` (k=3, ip=3, no drop path) at `size`² to `path`."""
    import torch

    from clustvit_ros.model import ClustViT, ClustViTConfig, save_checkpoint

    torch.manual_seed(0)
    config = ClustViTConfig.from_variant(variant, num_classes=num_classes, head=head,
                                         img_size=(size, size), drop_path=0.0)
    save_checkpoint(ClustViT(config).eval(), path)
    return path
