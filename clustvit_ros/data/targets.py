"""Pseudo-cluster targets for the Cluster module, computed from ground-truth masks (docs/model.md).

Per image and per ``patch_size`` x ``patch_size`` patch (token raster order):

1. A patch is *pure* for class c when all of its pixels equal c (``purity=1.0``, the paper).
   With ``purity < 1`` a patch takes its majority class c when c covers at least
   ``ceil(purity * patch_size**2)`` pixels (ties between equally frequent classes: lower id).
2. Mixed patches and patches whose (pure / majority) label is ``ignore_index`` get target 0.
3. Classes are ranked by how many pure patches they have **in this image**; the k most frequent
   become clusters 1..k (most frequent = 1). Every other patch gets 0 ("keep").

Tie-break: the paper breaks count ties arbitrarily (non-stable argsort). Here they are broken
deterministically: on equal pure-patch counts the **lower class id gets the better rank**.

Everything is batched tensor code on the input's device; the only host sync is one
``torch.unique`` that compresses the label values present in the batch.
"""
from __future__ import annotations

import math

import torch

__all__ = ["pseudo_cluster_targets"]


def pseudo_cluster_targets(masks: torch.Tensor, k: int, patch_size: int = 16,
                           ignore_index: int = 255, purity: float = 1.0) -> torch.Tensor:
    """Pseudo-cluster target per patch token.

    Args:
        masks: integer label maps ``(B, H, W)`` (any integer dtype), H and W multiples of
            ``patch_size``.
        k: number of clusters (>= 1). Targets lie in ``0..k``.
        patch_size: token patch size in pixels.
        ignore_index: label that never forms a cluster (padding, "other").
        purity: fraction of a patch's pixels its label must cover, in ``(0, 1]``; 1.0 is the paper.

    Returns:
        ``LongTensor (B, H // patch_size, W // patch_size)`` on ``masks.device``.
    """
    if masks.dim() != 3:
        raise ValueError(f"masks must be (B, H, W), got shape {tuple(masks.shape)}")
    if masks.dtype.is_floating_point or masks.dtype == torch.bool or masks.is_complex():
        raise TypeError(f"masks must be an integer tensor, got {masks.dtype}")
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if int(patch_size) < 1:
        raise ValueError(f"patch_size must be >= 1, got {patch_size}")
    if not 0.0 < float(purity) <= 1.0:
        raise ValueError(f"purity must be in (0, 1], got {purity}")
    b, h, w = masks.shape
    ps = int(patch_size)
    if h % ps or w % ps:
        raise ValueError(f"mask size {h}x{w} is not a multiple of patch size {ps}")
    hp, wp = h // ps, w // ps
    n_pix = ps * ps
    device = masks.device
    if b == 0 or hp == 0 or wp == 0:
        return torch.zeros((b, hp, wp), dtype=torch.long, device=device)

    # (B, P, ps*ps): the pixels of each patch, patches in token raster order.
    patches = masks.long().reshape(b, hp, ps, wp, ps).permute(0, 1, 3, 2, 4).reshape(b, hp * wp, n_pix)

    if purity >= 1.0:
        first = patches[..., 0]
        valid = (patches == first.unsqueeze(-1)).all(dim=-1)
        values, label = torch.unique(first, return_inverse=True)  # label: compressed id (B, P)
    else:
        lo, hi = int(patches.min()), int(patches.max())
        if lo >= 0 and b * hp * wp * (hi + 1) <= 1 << 24:
            # Small non-negative ids (the usual case, ignore 255 included): count them directly.
            values, inv = torch.arange(hi + 1, device=device), patches
        else:
            values, inv = torch.unique(patches, return_inverse=True)  # compressed ids
        c = values.numel()
        counts = torch.zeros((b, hp * wp, c), dtype=torch.int32, device=device)
        counts.scatter_add_(2, inv, torch.ones_like(inv, dtype=torch.int32))
        counts = counts.long()
        # Majority with a unique key so ties go to the lower id, whatever argmax does on ties.
        key = counts * c + (c - 1 - torch.arange(c, device=device))
        label = key.argmax(dim=-1)
        top = counts.gather(2, label.unsqueeze(-1)).squeeze(-1)
        need = max(1, math.ceil(float(purity) * n_pix - 1e-9))
        valid = top >= need
    valid = valid & (values[label] != ignore_index)

    # Pure-patch count of each class per image; invalid patches go to an extra, dropped column.
    c = values.numel()
    slot = torch.where(valid, label, torch.full_like(label, c))
    class_counts = torch.zeros((b, c + 1), dtype=torch.long, device=device)
    class_counts.scatter_add_(1, slot, torch.ones_like(slot))
    class_counts = class_counts[:, :c]

    # Rank classes: more patches first, then lower class id (values are sorted ascending).
    ids = torch.arange(c, device=device)
    key = class_counts * c + (c - 1 - ids)
    order = key.argsort(dim=1, descending=True)
    rank = torch.empty_like(order).scatter_(1, order, ids.expand(b, c).contiguous())
    cluster_of_class = torch.where((rank < k) & (class_counts > 0), rank + 1, torch.zeros_like(rank))

    target = cluster_of_class.gather(1, label) * valid
    return target.reshape(b, hp, wp)
