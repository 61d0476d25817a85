"""Analytic per-frame GFLOPs from the token counts a forward actually used.

Convention (the ClustViT paper's): 2 FLOPs per multiply-add of every matmul and convolution.

Counted: the patch embedding (one strided conv, or the conv stem's 3x3 stride-2 convs and its 1x1
projection); per block the qkv projection, Q K^T, A V, the attention output projection and the
two MLP linears, on the 1 + P tokens a block saw (1 + M + k after the injection point when the
frame merged); the Cluster MLP on the P patch tokens (whenever it ran,
even if it then merged nothing); the Regenerator on the P - M merged tokens; the head: for the
mask transformer its input projection, its blocks on P + C tokens (with the C class-embedding
tokens), the patch and class projections and the patch-class product; for the linear head its
Linear(D -> C); for the fpn head its token projection, the 1x1 projections of the stem's two maps,
its two separable convs (3x3 depthwise, 1x1 pointwise) and the 1x1 classifier, each on its own
grid (P cells for the tokens, 4P at half the patch stride, 16P at a quarter) and width.

Not counted (elementwise or data movement, as in the paper): bias adds, LayerNorm, BatchNorm,
GELU/ReLU, softmax, residual adds, L2 normalisation, position-embedding add and its bicubic
resize, the gathers/scatters and segment means of merging, padding, the fpn head's bilinear x2
upsamplings and skip adds, and the bilinear upsampling of the logits.

A batched forward is counted per image as if that image ran alone (batch size 1 is exact); the
compute wasted on padded slots of a batch is not counted.
"""
from __future__ import annotations

import math

from .configs import ClustViTConfig
from .fpn_head import quarter_channels
from .segmentor import TokenStats
from .vit import stem_channels


def block_flops(n: int, dim: int, mlp_hidden: int) -> int:
    """One pre-LN block on ``n`` tokens: qkv, QK^T, AV, output projection, MLP."""
    return 2 * n * dim * (3 * dim + dim + 2 * mlp_hidden) + 4 * n * n * dim


def flop_terms(config: ClustViTConfig, grid: tuple[int, int], kept: int | None = None,
               cluster_run: bool = False) -> dict[str, int]:
    """FLOPs of one image by component. ``kept`` None or P: nothing merged (dense sequence)."""
    c = config
    d, p = c.embed_dim, grid[0] * grid[1]
    merged = kept is not None and kept < p
    ip = c.ip if merged else c.depth
    return {
        "patch_embed": embed_flops(c, grid),
        "blocks": ip * block_flops(1 + p, d, c.mlp_hidden),
        "cluster": 2 * p * c.cluster_hidden * (d + c.k + 1) if cluster_run else 0,
        "blocks_merged": (c.depth - ip) * block_flops(1 + kept + c.k, d, c.mlp_hidden)
        if merged else 0,
        "regenerator": 2 * (p - kept) * (2 * d * d + d * d) if merged else 0,
        "head": head_flops(c, p),
    }


def embed_flops(config: ClustViTConfig, grid: tuple[int, int]) -> int:
    """The patch embedding on a (padded) image of ``grid`` patches."""
    c, p = config, grid[0] * grid[1]
    if c.stem == "patch":
        return 2 * p * c.embed_dim * 3 * c.patch_size ** 2
    channels = stem_channels(c.patch_size, c.embed_dim)
    total, c_in = 0, 3
    for i, c_out in enumerate(channels):  # conv i outputs (grid * 2**(n-1-i)) pixels per side
        scale = 1 << (len(channels) - 1 - i)
        total += 2 * p * scale * scale * c_out * c_in * 9
        c_in = c_out
    return total + 2 * p * c.embed_dim * c_in


def head_flops(config: ClustViTConfig, p: int) -> int:
    """The head on ``p`` patch tokens."""
    c, d = config, config.embed_dim
    if c.head == "linear":
        return 2 * p * d * c.num_classes
    if c.head == "fpn":
        ch, fine = c.fpn_channels, quarter_channels(c.fpn_channels)
        quarter, half = stem_channels(c.patch_size, d)[-3:-1]
        # per pixel: 1x1 projection of the stem's map, 3x3 depthwise, 1x1 pointwise (to `fine`)
        return 2 * (p * d * ch + 4 * p * (half * ch + 9 * ch + ch * fine)
                    + 16 * p * (quarter * fine + 9 * fine + fine * fine + fine * c.num_classes))
    n = p + c.num_classes
    return (2 * p * d * d + c.head_layers * block_flops(n, d, 4 * d)
            + 2 * n * d * d + 2 * p * c.num_classes * d)


def grid_of(config: ClustViTConfig, image_hw: tuple[int, int]) -> tuple[int, int]:
    """Patch grid of an image after padding to a multiple of the patch size."""
    return math.ceil(image_hw[0] / config.patch_size), math.ceil(image_hw[1] / config.patch_size)


def image_gflops(config: ClustViTConfig, stats: TokenStats) -> list[float]:
    """GFLOPs of each image of a forward, each counted as if it ran alone."""
    return [sum(flop_terms(config, stats.grid, m, stats.cluster_run).values()) / 1e9
            for m in stats.kept_tokens]


def frame_gflops(config: ClustViTConfig, stats: TokenStats,
                 image_hw: tuple[int, int] | None = None) -> float:
    """GFLOPs a forward used, summed over its images (each counted as if it ran alone).

    ``image_hw`` (the input H, W), when given, is checked against the grid in ``stats``.
    """
    if image_hw is not None and grid_of(config, image_hw) != tuple(stats.grid):
        raise ValueError(f"image {image_hw} has grid {grid_of(config, image_hw)}, "
                         f"stats say {stats.grid}")
    return sum(image_gflops(config, stats))


def dense_gflops(config: ClustViTConfig, image_hw: tuple[int, int]) -> float:
    """GFLOPs of the same model with no merging: the plain ViT + head (merge budget 0)."""
    return sum(flop_terms(config, grid_of(config, image_hw)).values()) / 1e9
