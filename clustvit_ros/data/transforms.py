"""Augmentation and evaluation-resize transforms (mmsegmentation semantics, OpenCV + numpy).

Every transform is a callable ``t(image, mask, rng) -> (image, mask)`` with

* ``image``: ``uint8 (H, W, 3)`` RGB numpy array,
* ``mask``: integer ``(H, W)`` numpy label map (uint8 or uint16 as loaded; ``ignore_index`` = 255),
* ``rng``: a ``numpy.random.Generator``; all randomness comes from it, so a pipeline is
  reproducible given the generator's seed.

:class:`ToTensor` ends a pipeline and produces the package's sample convention (see
``datasets.py``): ``image uint8 (3, H, W)`` tensor and ``mask int64 (H, W)`` tensor.

Training (docs/training.md): :func:`train_pipeline` = RandomResize (keep ratio) or fixed Resize,
RandomCrop with ``cat_max_ratio``, horizontal flip, PhotoMetricDistortion, Pad to the crop size
with 255. Evaluation needs no pipeline: it feeds raw images to the runtime engine, which resizes
them its own way (``resize`` policy) and returns labels at the mask's resolution.
"""
from __future__ import annotations

from typing import Callable, Sequence

import cv2
import numpy as np
import torch

__all__ = [
    "Transform", "Compose", "Resize", "RandomResize", "RandomCrop", "RandomFlip",
    "PhotoMetricDistortion", "Pad", "ToTensor", "rescale_size", "train_pipeline",
]

Transform = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple]


def _resize(image: np.ndarray | None, mask: np.ndarray | None, size_hw: tuple[int, int],
            resize_mask: bool = True):
    h, w = int(size_hw[0]), int(size_hw[1])
    if image is not None and image.shape[:2] != (h, w):
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    if resize_mask and mask is not None and mask.shape[:2] != (h, w):
        mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)
    return image, mask


def rescale_size(hw: tuple[int, int], scale: tuple[int, int]) -> tuple[int, int]:
    """mmcv ``imrescale`` size: the largest keep-ratio size whose long edge <= ``max(scale)`` and
    short edge <= ``min(scale)``. Returns ``(h, w)``."""
    h, w = hw
    factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    return max(1, int(h * factor + 0.5)), max(1, int(w * factor + 0.5))


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Transform]):
        self.transforms = list(transforms)

    def __call__(self, image, mask, rng: np.random.Generator):
        for t in self.transforms:
            image, mask = t(image, mask, rng)
        return image, mask

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(repr(t) for t in self.transforms) + ")"


class Resize:
    """Resize to exactly ``size = (h, w)`` (no aspect ratio kept), e.g. SUIM/RumexWeeds 512x512.

    ``resize_mask=False`` leaves the mask at its original size (evaluation)."""

    def __init__(self, size: tuple[int, int], resize_mask: bool = True):
        self.size = (int(size[0]), int(size[1]))
        self.resize_mask = resize_mask

    def __call__(self, image, mask, rng=None):
        return _resize(image, mask, self.size, self.resize_mask)

    def __repr__(self) -> str:
        return f"Resize(size={self.size}, resize_mask={self.resize_mask})"


class RandomResize:
    """mmseg ``RandomResize(scale, ratio_range, keep_ratio)``: draw r ~ U(ratio_range), target
    scale = scale * r; keep_ratio -> :func:`rescale_size`, else exactly ``(scale[1]*r, scale[0]*r)``
    as (h, w) (``scale`` is (w, h) like mmseg)."""

    def __init__(self, scale: tuple[int, int] = (2048, 512),
                 ratio_range: tuple[float, float] = (0.5, 2.0), keep_ratio: bool = True):
        self.scale = (int(scale[0]), int(scale[1]))
        self.ratio_range = (float(ratio_range[0]), float(ratio_range[1]))
        self.keep_ratio = keep_ratio

    def __call__(self, image, mask, rng: np.random.Generator):
        r = rng.uniform(*self.ratio_range)
        target = (int(self.scale[0] * r), int(self.scale[1] * r))
        if self.keep_ratio:
            size = rescale_size(image.shape[:2], target)
        else:
            size = (max(1, target[1]), max(1, target[0]))
        return _resize(image, mask, size)

    def __repr__(self) -> str:
        return (f"RandomResize(scale={self.scale}, ratio_range={self.ratio_range}, "
                f"keep_ratio={self.keep_ratio})")


class RandomCrop:
    """mmseg ``RandomCrop``: a random ``crop_size = (h, w)`` window (smaller when the image is);
    with ``cat_max_ratio < 1`` up to 10 draws until no single class covers >= that fraction of
    the crop's non-ignore pixels (and at least two classes are present)."""

    def __init__(self, crop_size: tuple[int, int], cat_max_ratio: float = 1.0,
                 ignore_index: int = 255):
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))
        self.cat_max_ratio = float(cat_max_ratio)
        self.ignore_index = ignore_index

    def _box(self, hw, rng):
        mh, mw = max(hw[0] - self.crop_size[0], 0), max(hw[1] - self.crop_size[1], 0)
        y, x = int(rng.integers(0, mh + 1)), int(rng.integers(0, mw + 1))
        return y, x, y + self.crop_size[0], x + self.crop_size[1]

    def __call__(self, image, mask, rng: np.random.Generator):
        y0, x0, y1, x1 = self._box(image.shape[:2], rng)
        if self.cat_max_ratio < 1.0:
            for _ in range(10):
                seg = mask[y0:y1, x0:x1]
                counts = np.bincount(seg.ravel().astype(np.int64))
                if self.ignore_index < len(counts):
                    counts[self.ignore_index] = 0
                counts = counts[counts > 0]
                if len(counts) > 1 and counts.max() / counts.sum() < self.cat_max_ratio:
                    break
                y0, x0, y1, x1 = self._box(image.shape[:2], rng)
        return image[y0:y1, x0:x1], mask[y0:y1, x0:x1]

    def __repr__(self) -> str:
        return f"RandomCrop(crop_size={self.crop_size}, cat_max_ratio={self.cat_max_ratio})"


class RandomFlip:
    """Horizontal flip with probability ``prob``."""

    def __init__(self, prob: float = 0.5):
        self.prob = float(prob)

    def __call__(self, image, mask, rng: np.random.Generator):
        if rng.random() < self.prob:
            image, mask = image[:, ::-1], mask[:, ::-1]
        return image, mask

    def __repr__(self) -> str:
        return f"RandomFlip(prob={self.prob})"


class PhotoMetricDistortion:
    """mmseg ``PhotoMetricDistortion`` on RGB: each step with probability 1/2 — brightness
    (+U(-delta, delta)), contrast (xU(range); before or after the HSV steps, 50/50), saturation
    (xU(range)), hue (+randint(-delta, delta) in OpenCV's 0..179 hue units). Implemented with
    256-entry lookup tables (cv2.LUT)."""

    def __init__(self, brightness_delta: int = 32, contrast_range=(0.5, 1.5),
                 saturation_range=(0.5, 1.5), hue_delta: int = 18):
        self.brightness_delta = brightness_delta
        self.contrast_range = tuple(contrast_range)
        self.saturation_range = tuple(saturation_range)
        self.hue_delta = hue_delta

    _ramp = np.arange(256, dtype=np.float32)

    @classmethod
    def _lut(cls, alpha: float, beta: float) -> np.ndarray:
        return np.clip(cls._ramp * alpha + beta, 0, 255).astype(np.uint8)

    def __call__(self, image, mask, rng: np.random.Generator):
        img = np.ascontiguousarray(image)
        if rng.integers(2):
            beta = rng.uniform(-self.brightness_delta, self.brightness_delta)
            img = cv2.LUT(img, self._lut(1.0, beta))
        contrast_first = bool(rng.integers(2))
        if contrast_first and rng.integers(2):
            img = cv2.LUT(img, self._lut(rng.uniform(*self.contrast_range), 0.0))
        do_sat = bool(rng.integers(2))
        sat = rng.uniform(*self.saturation_range) if do_sat else 1.0
        do_hue = bool(rng.integers(2))
        hue = int(rng.integers(-self.hue_delta, self.hue_delta)) if do_hue else 0
        if do_sat or do_hue:
            hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
            if do_sat:
                hsv[..., 1] = self._lut(sat, 0.0)[hsv[..., 1]]
            if do_hue:
                hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + hue) % 180).astype(np.uint8)
            img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        if not contrast_first and rng.integers(2):
            img = cv2.LUT(img, self._lut(rng.uniform(*self.contrast_range), 0.0))
        return img, mask

    def __repr__(self) -> str:
        return (f"PhotoMetricDistortion(brightness_delta={self.brightness_delta}, "
                f"contrast_range={self.contrast_range}, saturation_range={self.saturation_range}, "
                f"hue_delta={self.hue_delta})")


class RandomGaussianBlur:
    """With probability ``prob``, a Gaussian blur of the image with sigma drawn from
    U(``sigma_range``) (the mask is untouched): a camera out of focus or moving, which unseen
    sequences bring and a few sharp training sequences do not."""

    def __init__(self, prob: float = 0.5, sigma_range: tuple[float, float] = (0.1, 2.0)):
        self.prob = prob
        self.sigma_range = tuple(sigma_range)

    def __call__(self, image, mask, rng: np.random.Generator):
        if rng.random() >= self.prob:
            return image, mask
        sigma = rng.uniform(*self.sigma_range)
        return cv2.GaussianBlur(np.ascontiguousarray(image), (0, 0), sigma), mask

    def __repr__(self) -> str:
        return f"RandomGaussianBlur(prob={self.prob}, sigma_range={self.sigma_range})"


class Pad:
    """Pad bottom/right to at least ``size = (h, w)``: image with ``pad_val``, mask with
    ``seg_pad_val`` (255 = ignore)."""

    def __init__(self, size: tuple[int, int], pad_val: int = 0, seg_pad_val: int = 255):
        self.size = (int(size[0]), int(size[1]))
        self.pad_val = pad_val
        self.seg_pad_val = seg_pad_val

    def __call__(self, image, mask, rng=None):
        ph, pw = max(self.size[0] - image.shape[0], 0), max(self.size[1] - image.shape[1], 0)
        if ph or pw:
            image = cv2.copyMakeBorder(np.ascontiguousarray(image), 0, ph, 0, pw,
                                       cv2.BORDER_CONSTANT, value=(self.pad_val,) * 3)
            if mask is not None:
                mph = max(self.size[0] - mask.shape[0], 0)
                mpw = max(self.size[1] - mask.shape[1], 0)
                mask = np.pad(mask, ((0, mph), (0, mpw)), constant_values=self.seg_pad_val)
        return image, mask

    def __repr__(self) -> str:
        return f"Pad(size={self.size}, pad_val={self.pad_val}, seg_pad_val={self.seg_pad_val})"


class ToTensor:
    """numpy ``uint8 (H, W, 3)`` + ``(H, W)`` -> ``torch.uint8 (3, H, W)`` + ``torch.int64 (H, W)``.
    No normalisation: mean/std are applied on the device by the model side."""

    def __call__(self, image, mask, rng=None):
        img = torch.from_numpy(np.ascontiguousarray(image).transpose(2, 0, 1).copy())
        m = torch.from_numpy(np.ascontiguousarray(mask).astype(np.int64, copy=False))
        return img, m

    def __repr__(self) -> str:
        return "ToTensor()"


def train_pipeline(crop_size: tuple[int, int] = (512, 512), *,
                   scale: tuple[int, int] | None = (2048, 512),
                   ratio_range: tuple[float, float] = (0.5, 2.0),
                   fixed_size: tuple[int, int] | None = None, cat_max_ratio: float = 0.75,
                   flip_prob: float = 0.5, photometric: bool = True, blur_prob: float = 0.0,
                   ignore_index: int = 255) -> Compose:
    """The paper's training pipeline (docs/training.md) ending in :class:`ToTensor`.

    ADE20K: defaults (RandomResize (2048, 512) x [0.5, 2], crop 512, cat_max_ratio 0.75).
    SUIM / RumexWeeds: ``fixed_size=(512, 512)`` (exact resize, no keep ratio) replaces the
    random resize. ``scale=None`` and ``fixed_size=None``: no resize (e.g. synthetic scenes).
    """
    ts: list[Transform] = []
    if fixed_size is not None:
        ts.append(Resize(fixed_size))
    elif scale is not None:
        ts.append(RandomResize(scale, ratio_range, keep_ratio=True))
    ts.append(RandomCrop(crop_size, cat_max_ratio, ignore_index))
    if flip_prob > 0:
        ts.append(RandomFlip(flip_prob))
    if photometric:
        ts.append(PhotoMetricDistortion())
    if blur_prob > 0:
        ts.append(RandomGaussianBlur(blur_prob))
    ts.append(Pad(crop_size, 0, ignore_index))
    ts.append(ToTensor())
    return Compose(ts)

