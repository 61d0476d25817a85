"""mIoU / IoU on hand-made predictions (mmseg IoUMetric semantics)."""
from __future__ import annotations

import math

import pytest
import torch

from clustvit_ros.train.metrics import ConfusionMatrix


def _cm(pred, target, num_classes=4):
    cm = ConfusionMatrix(num_classes)
    cm.update(torch.tensor(pred), torch.tensor(target))
    return cm


def test_perfect_prediction_is_one():
    cm = _cm([[0, 1], [2, 3]], [[0, 1], [2, 3]])
    assert cm.iou() == [1.0, 1.0, 1.0, 1.0]
    assert cm.miou() == 1.0 and cm.pixel_accuracy() == 1.0


def test_hand_computed_iou_with_absent_and_spurious_classes():
    target = [[0, 0, 0, 1, 1, 0]]
    pred = [[0, 0, 1, 1, 2, 0]]
    cm = _cm(pred, target)
    iou = cm.iou()
    assert iou[0] == pytest.approx(3 / 4)  # tp 3, fn 1 (pixel 2)
    assert iou[1] == pytest.approx(1 / 3)  # tp 1 (pixel 3), fp 1 (pixel 2), fn 1 (pixel 4)
    # class 2 is predicted but never present -> 0; class 3 is absent everywhere -> NaN, skipped
    assert iou[2] == 0.0
    assert math.isnan(iou[3])
    assert cm.miou() == pytest.approx((3 / 4 + 1 / 3 + 0.0) / 3)


def test_ignore_pixels_do_not_count():
    cm = _cm([[3, 1, 2]], [[255, 1, 255]])
    assert cm.matrix.sum() == 1
    assert cm.iou()[1] == 1.0
    assert cm.miou() == 1.0  # classes 2 and 3 only "predicted" on ignored pixels: not counted


def test_accumulates_over_images_before_dividing():
    cm = ConfusionMatrix(2)
    cm.update(torch.tensor([0, 0]), torch.tensor([0, 0]))
    cm.update(torch.tensor([0, 1]), torch.tensor([1, 1]))
    # class 0: tp 2, fp 1 -> 2/3; class 1: tp 1, fn 1 -> 1/2 (not the mean of per-image IoUs)
    assert cm.iou() == pytest.approx([2 / 3, 1 / 2])


def test_all_ignored_is_nan_and_bad_ids_raise():
    assert math.isnan(_cm([[1]], [[255]]).miou())
    with pytest.raises(ValueError, match="ground truth"):
        _cm([[0]], [[7]])
    with pytest.raises(ValueError, match="prediction"):
        _cm([[9]], [[0]])
    with pytest.raises(ValueError, match="differ"):
        ConfusionMatrix(2).update(torch.zeros(2, 2), torch.zeros(3))
