"""Plain ViT building blocks (timm naming): patch embedding, pre-LN blocks, position embedding.

Attention runs through ``F.scaled_dot_product_attention``; a boolean ``key_valid`` (B, N) mask
(True = a real token) hides padded key slots. Module and parameter names follow timm's
``vision_transformer.py`` so timm weights load by prefixing ``encoder.``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

LN_EPS = 1e-6


def resize_pos_embed(pos: Tensor, src_grid: tuple[int, int], dst_grid: tuple[int, int]) -> Tensor:
    """Bicubically resize a (1, 1 + h*w, D) cls+grid position embedding to another grid.

    As mmseg ``resize_pos_embed`` (``align_corners=False``, no antialias); cls entry unchanged.
    """
    if tuple(src_grid) == tuple(dst_grid):
        return pos
    cls_pos, grid_pos = pos[:, :1], pos[:, 1:]
    d = pos.shape[-1]
    grid_pos = grid_pos.reshape(1, src_grid[0], src_grid[1], d).permute(0, 3, 1, 2)
    grid_pos = F.interpolate(grid_pos.float(), size=dst_grid, mode="bicubic", align_corners=False)
    grid_pos = grid_pos.to(pos.dtype).permute(0, 2, 3, 1).reshape(1, -1, d)
    return torch.cat([cls_pos, grid_pos], dim=1)


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch_size`` conv: (B, 3, H, W) -> (B, H/p * W/p, D) in raster order."""

    def __init__(self, patch_size: int, embed_dim: int, bias: bool) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, patch_size, stride=patch_size, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class ConvStem(nn.Module):
    """Convolutional patch embedding (Xiao et al. 2021, "Early convolutions help transformers see
    better"): log2(patch) 3x3 stride-2 convs with BatchNorm + ReLU, channels doubling up to the
    embedding width, then a 1x1 projection. Same output as :class:`PatchEmbed`, one token per
    ``patch_size`` square; the receptive fields overlap, which helps ViTs trained on little data.
    """

    STAGE = 3  # modules per stage (conv, BatchNorm, ReLU)

    def __init__(self, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.channels = stem_channels(patch_size, embed_dim)
        layers: list[nn.Module] = []
        for c_in, c_out in zip((3, *self.channels), self.channels):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        self.stem = nn.Sequential(*layers)
        self.proj = nn.Conv2d(self.channels[-1], embed_dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with_skips(x, 0)[0]

    def forward_with_skips(self, x: Tensor, skips: int) -> tuple[Tensor, tuple[Tensor, ...]]:
        """(B, 3, H, W) -> ((B, P, D) tokens, the feature maps of the ``skips`` stages before the
        last, finest first): the maps a decoder fuses, kept as the stem computes them."""
        # The wider convs after the first stage run channels-last, the layout the CPU's conv kernels
        # prefer (docs/decisions.md, "the default model misses the efficiency targets"); the
        # 3-channel input keeps its own layout. The flattened output is then token-major.
        stages = []
        for i, layer in enumerate(self.stem):
            if i == self.STAGE:
                x = x.contiguous(memory_format=torch.channels_last)
            x = layer(x)
            if i % self.STAGE == self.STAGE - 1:
                stages.append(x)
        kept = tuple(stages[len(stages) - 1 - skips:-1]) if skips else ()
        return self.proj(x).flatten(2).transpose(1, 2), kept

    def fold_batchnorm(self) -> None:
        """Fold each eval-mode BatchNorm into the conv before it (for inference only: the folded
        stem computes the same function up to float rounding but can no longer be trained)."""
        if self.training:
            raise RuntimeError("fold_batchnorm needs an eval-mode stem (it fixes the running statistics)")
        for i, layer in enumerate(self.stem):
            if isinstance(layer, nn.BatchNorm2d):
                self.stem[i - 1] = fuse_conv_bn_eval(self.stem[i - 1], layer)
                self.stem[i] = nn.Identity()


def stem_channels(patch_size: int, embed_dim: int) -> tuple[int, ...]:
    """Output channels of the conv stem's stride-2 convs: ``embed_dim / 2**(n-1) .. embed_dim``
    for ``patch_size == 2**n`` (each at least 8)."""
    n = patch_size.bit_length() - 1
    if patch_size < 2 or 1 << n != patch_size:
        raise ValueError(f"a conv stem needs a power-of-two patch size, got {patch_size}")
    return tuple(max(8, embed_dim >> (n - 1 - i)) for i in range(n))


class Attention(nn.Module):
    """Multi-head self-attention with packed qkv (same layout as ``nn.MultiheadAttention``)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, key_valid: Tensor | None = None) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(
            2, 0, 3, 1, 4).unbind(0)
        mask = None if key_valid is None else key_valid[:, None, None, :]
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(x.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DropPath(nn.Module):
    """Per-sample stochastic depth (identity in eval mode)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)


class Block(nn.Module):
    """Pre-LN transformer block: x + Attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_hidden: int, drop_path: float = 0.0,
                 eps: float = LN_EPS) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, mlp_hidden)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor, key_valid: Tensor | None = None) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), key_valid))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class VisionTransformer(nn.Module):
    """Patch embedding (``stem``: ``patch`` = one strided conv, ``conv`` = :class:`ConvStem`) + cls
    token + learned position embedding + blocks + final LayerNorm.

    The segmentor drives the blocks itself (the Cluster module sits between two of them), so this
    module offers :meth:`embed` and exposes ``blocks`` and ``norm``. The position embedding is
    learned on ``grid`` and resized bicubically for any other input grid; the resized copy is
    cached per (grid, dtype, device) while gradients are off (inference), and recomputed whenever
    the parameter changes (its version counter is part of the key).
    """

    def __init__(self, patch_size: int, embed_dim: int, depth: int, num_heads: int,
                 mlp_hidden: int, grid: tuple[int, int], patch_bias: bool = False,
                 drop_path: float = 0.0, stem: str = "patch") -> None:
        super().__init__()
        self.patch_size = patch_size
        self.grid = tuple(grid)
        self.patch_embed = (ConvStem(patch_size, embed_dim) if stem == "conv"
                            else PatchEmbed(patch_size, embed_dim, patch_bias))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid[0] * grid[1], embed_dim))
        rates = [drop_path * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_hidden, r) for r in rates)
        self.norm = nn.LayerNorm(embed_dim, eps=LN_EPS)
        self._pos_cache: dict[tuple, Tensor] = {}
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.blocks.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def pos_embed_for(self, grid: tuple[int, int], dtype: torch.dtype) -> Tensor:
        """The (1, 1 + h*w, D) position embedding for a ``grid`` of patches, in ``dtype``."""
        if grid == self.grid:
            return self.pos_embed.to(dtype)
        if torch.is_grad_enabled():
            return resize_pos_embed(self.pos_embed, self.grid, grid).to(dtype)
        key = (grid, dtype, self.pos_embed.device, self.pos_embed._version)
        pos = self._pos_cache.get(key)
        if pos is None:
            if len(self._pos_cache) >= 8 or any(k[3] != key[3] for k in self._pos_cache):
                self._pos_cache.clear()
            pos = self._pos_cache[key] = resize_pos_embed(self.pos_embed, self.grid, grid).to(dtype)
        return pos

    def embed(self, images: Tensor, skips: int = 0
              ) -> tuple[Tensor, tuple[int, int], tuple[Tensor, ...]]:
        """(B, 3, H, W) with H, W multiples of the patch size -> ((B, 1+P, D) tokens, (h, w), the
        conv stem's last ``skips`` feature maps before the tokens, finest first)."""
        h, w = images.shape[-2] // self.patch_size, images.shape[-1] // self.patch_size
        if skips and not isinstance(self.patch_embed, ConvStem):
            raise ValueError("only the conv stem has feature maps to pass on")
        x, kept = self.patch_embed.forward_with_skips(images, skips) if skips else (
            self.patch_embed(images), ())
        x = torch.cat([self.cls_token.to(x.dtype).expand(x.shape[0], -1, -1), x], dim=1)
        return x + self.pos_embed_for((h, w), x.dtype), (h, w), kept
