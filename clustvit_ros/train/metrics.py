"""Segmentation metrics: a confusion matrix accumulated over images, IoU per class and mIoU.

Follows mmseg's ``IoUMetric``: pixels whose ground truth is ``ignore_index`` are skipped; a class's
IoU is ``TP / (TP + FP + FN)``; a class absent from both the ground truth and the predictions of
the whole evaluation (union 0) has IoU NaN and does not count in the mean. A class that is
predicted but never present has IoU 0.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


class ConfusionMatrix:
    """``matrix[t, p]``: number of pixels of ground-truth class t predicted as p (int64, on CPU)."""

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add one batch: ``pred`` and ``target`` integer label maps of the same shape.

        Ground-truth ids outside ``0..C-1`` other than ``ignore_index`` are an error.
        """
        if pred.shape != target.shape:
            raise ValueError(f"prediction {tuple(pred.shape)} and target "
                             f"{tuple(target.shape)} differ")
        pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
        valid = target != self.ignore_index
        pred, target = pred[valid], target[valid]
        c = self.num_classes
        if target.numel() and (int(target.min()) < 0 or int(target.max()) >= c):
            raise ValueError(f"ground truth holds ids outside 0..{c - 1} "
                             f"(ignore {self.ignore_index})")
        if pred.numel() and (int(pred.min()) < 0 or int(pred.max()) >= c):
            raise ValueError(f"prediction holds ids outside 0..{c - 1}")
        counts = torch.bincount((target * c + pred).cpu(), minlength=c * c)
        self.matrix += counts.reshape(c, c)

    def iou(self) -> list[float]:
        """Per-class IoU (NaN for classes neither present nor predicted)."""
        m = self.matrix.double()
        tp = m.diag()
        union = m.sum(0) + m.sum(1) - tp
        return [float(t / u) if u > 0 else math.nan for t, u in zip(tp, union)]

    def miou(self) -> float:
        """Mean IoU over the classes with a non-empty union (NaN if there are none)."""
        values = [v for v in self.iou() if not math.isnan(v)]
        return sum(values) / len(values) if values else math.nan

    def pixel_accuracy(self) -> float:
        total = int(self.matrix.sum())
        return float(self.matrix.diag().sum()) / total if total else math.nan
