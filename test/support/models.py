"""Small checkpoints the tests make (random weights; real files in the real format)."""
from __future__ import annotations

from pathlib import Path

import torch

from clustvit_ros.model.checkpoints import save_checkpoint
from clustvit_ros.model.configs import ClustViTConfig
from clustvit_ros.model.segmentor import ClustViT

CLASSES = ("sky", "ground", "crop", "weed")


def tiny_config(**overrides) -> ClustViTConfig:
    """4 blocks of width 32, k=3 injected before block 1, 64x64 training size, 4 classes."""
    fields = dict(embed_dim=32, depth=4, num_heads=2, mlp_hidden=64, cluster_hidden=64,
                  img_size=(64, 64), k=3, ip=1, class_names=CLASSES, drop_path=0.0)
    fields.update(overrides)
    return ClustViTConfig(**fields)


def make_checkpoint(path: Path, seed: int = 0, **overrides) -> Path:
    torch.manual_seed(seed)
    save_checkpoint(ClustViT(tiny_config(**overrides)).eval(), path)
    return path


def trained_looking_batchnorms(model: ClustViT, seed: int = 1) -> ClustViT:
    """`model` with every BatchNorm holding non-trivial statistics and affine parameters, as after
    training (fresh ones are the identity, which hides a wrong fold)."""
    g = torch.Generator().manual_seed(seed)
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        c = bn.num_features
        bn.running_mean.copy_(torch.randn(c, generator=g))
        bn.running_var.copy_(torch.rand(c, generator=g) + 0.5)
        bn.weight.data.copy_(torch.randn(c, generator=g))
        bn.bias.data.copy_(torch.randn(c, generator=g))
    return model
