"""The ClustViT training loss (docs/model.md): pixel CE + lambda x token CE on the clusters."""
from __future__ import annotations

from typing import NamedTuple

import torch.nn.functional as F
from torch import Tensor

from ..data.targets import pseudo_cluster_targets
from ..model.segmentor import SegOutput


class Losses(NamedTuple):
    """``total`` is what is back-propagated; ``cluster`` is None for the dense baseline,
    ``distill`` (the weighted distillation term, :mod:`.distill`) None without a teacher."""

    total: Tensor
    seg: Tensor
    cluster: Tensor | None
    distill: Tensor | None = None


def segmentation_loss(logits: Tensor, masks: Tensor, ignore_index: int = 255,
                      class_weight: Tensor | None = None) -> Tensor:
    """Pixel cross-entropy of (B, C, H, W) logits against (B, H, W) labels.

    As mmseg's default (``avg_non_ignore=False``): summed over the non-ignored pixels (each
    scaled by its class's ``class_weight``, if given) and divided by **all** B*H*W pixels.
    Logits at another size than the masks are upsampled bilinearly.
    """
    if logits.shape[-2:] != masks.shape[-2:]:
        logits = F.interpolate(logits, size=masks.shape[-2:], mode="bilinear", align_corners=False)
    loss = F.cross_entropy(logits.float(), masks.long(), weight=class_weight,
                           ignore_index=ignore_index, reduction="sum")
    return loss / masks.numel()


def cluster_loss(cluster_logits: Tensor, masks: Tensor, k: int, patch_size: int,
                 ignore_index: int = 255, purity: float = 1.0) -> Tensor:
    """Token cross-entropy of (B, P, k+1) cluster logits against the pseudo-cluster targets of
    the (B, H, W) masks, averaged over all B*P tokens (no token is ignored, as in the paper)."""
    targets = pseudo_cluster_targets(masks, k, patch_size, ignore_index, purity).flatten(1)
    if targets.shape != cluster_logits.shape[:2]:
        raise ValueError(f"{targets.shape[1]} pseudo-cluster targets per image for "
                         f"{cluster_logits.shape[1]} tokens: masks must be the model input size")
    return F.cross_entropy(cluster_logits.float().flatten(0, 1), targets.flatten())


def clustvit_loss(out: SegOutput, masks: Tensor, k: int, patch_size: int, weight: float = 0.1,
                  ignore_index: int = 255, purity: float = 1.0,
                  class_weight: Tensor | None = None) -> Losses:
    """L = L_seg + ``weight`` * L_clust; the second term only when the Cluster module ran.
    ``class_weight`` (C,) weighs the pixel term only (pseudo-clusters are not classes)."""
    seg = segmentation_loss(out.logits, masks, ignore_index, class_weight)
    if out.cluster_logits is None:
        return Losses(seg, seg, None)
    clust = cluster_loss(out.cluster_logits, masks, k, patch_size, ignore_index, purity)
    return Losses(seg + weight * clust, seg, clust)
