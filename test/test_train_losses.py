"""The training loss: pixel CE (ignore 255, mmseg averaging) + 0.1 x token CE on cluster logits."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from clustvit_ros.model.segmentor import SegOutput, TokenStats
from clustvit_ros.train.losses import clustvit_loss, cluster_loss, segmentation_loss


def test_segmentation_loss_is_mean_ce_without_ignore():
    torch.manual_seed(0)
    logits, masks = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    assert segmentation_loss(logits, masks) == pytest.approx(float(F.cross_entropy(logits, masks)))


def test_ignored_pixels_add_nothing_but_count_in_the_mean():
    torch.manual_seed(0)
    logits, masks = torch.randn(1, 3, 2, 2), torch.tensor([[[0, 1], [255, 255]]])
    kept = F.cross_entropy(logits, masks, ignore_index=255, reduction="sum")
    assert segmentation_loss(logits, masks) == pytest.approx(float(kept) / 4)


def test_logits_are_upsampled_to_the_mask():
    logits = torch.zeros(1, 2, 2, 2)
    logits[:, 1] = 10.0
    assert segmentation_loss(logits, torch.ones(1, 8, 8, dtype=torch.long)) < 1e-3


def test_cluster_loss_uses_the_pseudo_targets():
    # 32x32 mask, 2x2 patches of 16: class 5 in 3 patches, class 2 in 1 -> targets 1,1,1,2 (k=2)
    mask = torch.full((1, 32, 32), 5)
    mask[:, 16:, 16:] = 2
    target = torch.tensor([1, 1, 1, 2])
    logits = F.one_hot(target, 3).float()[None] * 20.0
    assert cluster_loss(logits, mask, k=2, patch_size=16) < 1e-6
    wrong = F.one_hot(torch.tensor([0, 0, 0, 0]), 3).float()[None] * 20.0
    assert cluster_loss(wrong, mask, k=2, patch_size=16) > 10


def test_total_is_seg_plus_weighted_cluster_term_only_when_cluster_logits_exist():
    torch.manual_seed(0)
    mask = torch.randint(0, 3, (1, 32, 32))
    stats = TokenStats.all_dense(1, (2, 2), True)
    out = SegOutput(torch.randn(1, 3, 32, 32), torch.randn(1, 4, 4), stats)
    losses = clustvit_loss(out, mask, k=3, patch_size=16, weight=0.1)
    assert losses.total == pytest.approx(float(losses.seg + 0.1 * losses.cluster))
    dense = clustvit_loss(out._replace(cluster_logits=None), mask, k=3, patch_size=16)
    assert dense.cluster is None and dense.total == dense.seg


def test_mask_size_must_match_the_tokens():
    out = torch.randn(1, 4, 4)
    with pytest.raises(ValueError, match="pseudo-cluster targets"):
        cluster_loss(out, torch.zeros(1, 64, 64, dtype=torch.long), k=3, patch_size=16)


def test_class_weights_scale_each_pixel_by_its_class():
    torch.manual_seed(0)
    logits, masks = torch.randn(1, 3, 2, 2), torch.tensor([[[0, 1], [2, 255]]])
    weight = torch.tensor([1.0, 2.0, 0.5])
    per_pixel = F.cross_entropy(logits, masks, ignore_index=255, reduction="none")
    expected = (per_pixel[0, 0, 0] + 2 * per_pixel[0, 0, 1] + 0.5 * per_pixel[0, 1, 0]) / 4
    assert segmentation_loss(logits, masks, class_weight=weight) == pytest.approx(float(expected))
