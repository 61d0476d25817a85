"""Class weights for the segmentation loss: median-frequency balancing (Eigen & Fergus 2015, as
SegNet and ENet train CamVid), whole or square-rooted."""
from __future__ import annotations

import numpy as np
import torch

from ..data import SegmentationDataset

CLASS_WEIGHTS = ("none", "median_frequency", "sqrt_median_frequency")


def median_frequency_weights(dataset: SegmentationDataset) -> torch.Tensor:
    """``w_c = median(f) / f_c`` with ``f_c`` = pixels of class c / pixels of the images that
    contain c, over the raw (untransformed) masks of ``dataset``. A class that never occurs
    gets weight 0 (it cannot be learnt from this data)."""
    n = dataset.num_classes
    pixels, image_pixels = np.zeros(n, np.float64), np.zeros(n, np.float64)
    for i in range(len(dataset)):
        mask = np.asarray(dataset.load(i)[1]).ravel()
        counts = np.bincount(mask[mask < n].astype(np.int64), minlength=n)
        pixels += counts
        image_pixels += (counts > 0) * mask.size
    present = pixels > 0
    if not present.any():
        raise ValueError(f"{dataset!r}: no labelled pixel to weight classes by")
    freq = np.where(present, pixels / np.maximum(image_pixels, 1), 0.0)
    weights = np.where(present, np.median(freq[present]) / np.where(present, freq, 1.0), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


def class_weights(kind: str, dataset: SegmentationDataset) -> torch.Tensor | None:
    """The pixel-loss weights ``kind`` names (one of :data:`CLASS_WEIGHTS`); None for ``none``.

    ``sqrt_median_frequency`` is the square root of the median-frequency weights: rare classes
    still count more than common ones, but a weight ratio of 60 between the rarest and the
    commonest class becomes about 8, so a thin class's weight no longer outvotes the evidence
    of the large class around it (whole weights paint building pixels as sign and fence)."""
    if kind == "none":
        return None
    if kind == "median_frequency":
        return median_frequency_weights(dataset)
    if kind == "sqrt_median_frequency":
        return median_frequency_weights(dataset).sqrt()
    raise ValueError(f"class weight {kind!r}: one of {CLASS_WEIGHTS}")
