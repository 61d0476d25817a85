"""Decode heads: (B, P, D) patch tokens of an (h, w) grid -> (B, C, h, w) patch-level logits."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .vit import Block

HEAD_LN_EPS = 1e-5  # mmseg head norm_cfg=dict(type='LN') uses the LayerNorm default


class MaskTransformerHead(nn.Module):
    """Segmenter's mask transformer (mmseg ``SegmenterMaskTransformerHead``).

    Linear(D->D) on the patch tokens, append C learned class embeddings, ``layers`` pre-LN blocks
    (MLP 4D), LN, bias-free projections of patches and classes, L2-normalise both,
    masks = patches @ classes^T, then LN over the class dimension.
    """

    def __init__(self, dim: int, num_heads: int, num_classes: int, layers: int = 2,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        rates = [drop_path * i / max(layers - 1, 1) for i in range(layers)]
        self.dec_proj = nn.Linear(dim, dim)
        self.cls_emb = nn.Parameter(torch.zeros(1, num_classes, dim))
        self.blocks = nn.ModuleList(
            Block(dim, num_heads, 4 * dim, r, eps=HEAD_LN_EPS) for r in rates)
        self.decoder_norm = nn.LayerNorm(dim, eps=HEAD_LN_EPS)
        self.patch_proj = nn.Linear(dim, dim, bias=False)
        self.classes_proj = nn.Linear(dim, dim, bias=False)
        self.mask_norm = nn.LayerNorm(num_classes, eps=HEAD_LN_EPS)
        nn.init.trunc_normal_(self.cls_emb, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, tokens: Tensor, grid: tuple[int, int]) -> Tensor:
        b, p, _ = tokens.shape
        x = torch.cat([self.dec_proj(tokens), self.cls_emb.to(tokens.dtype).expand(b, -1, -1)], 1)
        for blk in self.blocks:
            x = blk(x)
        x = self.decoder_norm(x)
        patches = F.normalize(self.patch_proj(x[:, :p]), dim=-1)
        classes = F.normalize(self.classes_proj(x[:, p:]), dim=-1)
        masks = self.mask_norm(patches @ classes.transpose(1, 2))
        # contiguous NCHW: the bilinear upsample is far slower on the transposed strides
        return masks.transpose(1, 2).contiguous().view(b, self.num_classes, *grid)


class LinearHead(nn.Module):
    """Per-patch Linear(D -> C) (Segmenter's linear decoder; mmseg FCNHead with 0 convs)."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.proj = nn.Linear(dim, num_classes)

    def forward(self, tokens: Tensor, grid: tuple[int, int]) -> Tensor:
        logits = self.proj(tokens).transpose(1, 2).contiguous()
        return logits.view(tokens.shape[0], self.num_classes, *grid)
