"""Patch-level class logits -> a label map at the image's resolution (bilinear upsample + argmax).

This runs on every frame and does not shrink with token merging, so it is kept cheap three ways.
The first two are exact (the labels equal a plain full-resolution argmax; at a tie to within float
rounding either class may win, as in the reference, whose kernel rounds differently per channel
count):

- classes that cannot win any pixel are dropped before upsampling (`winnable_classes`): with 150
  classes 4-8 stayed in play on the benchmark scenes (more where logits are nearly tied);
- the remaining classes are upsampled in bounded chunks with a running max, so C x H x W is never
  allocated at once (150 classes at 720p would be 550 MB in fp32);
- an image above `LABEL_MAP_PIXELS` (1080p fits) gets the exact label map of the largest size
  within that limit (or the model input's, if larger), same aspect, enlarged by nearest neighbour:
  the per-class work stays at the limit whatever the camera, each camera pixel costs one look-up,
  and class boundaries move by less than the enlargement factor (2.5 px for 12.6 MP).
"""
from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F

from ..model.pixels import logits_to_pixels

ROUNDING_SLACK = 16  # in units of the dtype's epsilon, relative to the largest logit magnitude
# Below this many classes the check costs more than it saves (the default model's 8 classes: 7.7
# kept on average over synthetic scenes, +0.14 ms at 640x480 on 2 CPU cores).
PRUNE_FROM_CLASSES = 17
LABEL_MAP_PIXELS = 1 << 21  # 2.1 MP: the largest label map computed per class (1920x1080 fits)


def winnable_classes(patch_logits: torch.Tensor, window: int) -> torch.Tensor:
    """Ids of the classes that can be the argmax of some output pixel, ascending.

    Bilinear interpolation (align_corners=False, no antialias) makes each output value a convex
    mix of the class's values on 2x2 neighbouring cells; resampling twice (pad, crop, resize)
    mixes at most 3x3. Within every `window` x `window` block of cells the class with the largest
    minimum is worth at least that minimum at every pixel mixed from the block, so a class whose
    maximum there is below it cannot win any such pixel. A class is kept when it reaches that
    floor in at least one block, less a margin for the rounding of the interpolation itself.
    """
    x = patch_logits.float()
    x = F.pad(x, (0, window - 1, 0, window - 1), mode="replicate")  # edge blocks hold fewer cells
    high = F.max_pool2d(x, window, stride=1)
    low = -F.max_pool2d(-x, window, stride=1)
    floor = low.amax(dim=1, keepdim=True)
    margin = ROUNDING_SLACK * torch.finfo(patch_logits.dtype).eps * (1.0 + x.abs().amax())
    return (high >= floor - margin).flatten(2).any(dim=2)[0].nonzero().flatten()


def upsample_argmax(patch_logits: torch.Tensor, padded_hw: tuple[int, int], model_hw: tuple[int, int],
                    image_hw: tuple[int, int], max_elements: int = 1 << 24,
                    prune_from: int | None = PRUNE_FROM_CLASSES) -> torch.Tensor:
    """Class ids (H, W) uint8 at the image's resolution from (1, C, h, w) patch-level logits.

    The logits are mapped onto the image by :func:`~clustvit_ros.model.pixels.logits_to_pixels`
    (bilinear to the padded model input, cropped, resized to the image). Bilinear interpolation
    acts on each class separately, so classes are processed in chunks of at most `max_elements`
    output values with a running max; ties keep the lower class id, as argmax does. Classes are
    pruned first when there are at least `prune_from` (None: never, the benchmarks' reference).
    Above `LABEL_MAP_PIXELS` (or the model input's size, if larger) the label map is made at that
    size and enlarged (see the module docstring).
    """
    limit = max(LABEL_MAP_PIXELS, model_hw[0] * model_hw[1])
    h, w = image_hw
    if h * w <= limit:
        return _exact(patch_logits, padded_hw, model_hw, image_hw, max_elements, prune_from)
    small_h = max(1, math.floor(h * math.sqrt(limit / (h * w))))
    small_w = max(1, min(w, limit // small_h))
    labels = _exact(patch_logits, padded_hw, model_hw, (small_h, small_w), max_elements, prune_from)
    return _enlarge(labels, image_hw)


def _exact(patch_logits: torch.Tensor, padded_hw: tuple[int, int], model_hw: tuple[int, int],
           image_hw: tuple[int, int], max_elements: int, prune_from: int | None) -> torch.Tensor:
    """The argmax of every pixel at `image_hw`: pruned classes, chunked running max."""
    up = partial(logits_to_pixels, padded_hw=padded_hw, input_hw=model_hw, out_hw=image_hw)
    class_ids = None
    if prune_from is not None and patch_logits.shape[1] >= prune_from:
        kept = winnable_classes(patch_logits, window=2 if padded_hw == model_hw else 3)
        if len(kept) < patch_logits.shape[1]:
            class_ids, patch_logits = kept, patch_logits.index_select(1, kept)
    classes = patch_logits.shape[1]
    step = max(1, max_elements // (image_hw[0] * image_hw[1]))
    best_value, best = up(patch_logits[:, :step]).max(dim=1)
    for start in range(step, classes, step):
        value, index = up(patch_logits[:, start:start + step]).max(dim=1)
        better = value > best_value  # strict: ties keep the lower class id
        best_value = torch.where(better, value, best_value)
        best = torch.where(better, index + start, best)
    if class_ids is not None:
        best = class_ids[best]
    return best[0].to(torch.uint8)


def _enlarge(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(h, w) labels -> (H, W): each output pixel takes the label under its centre."""
    def centres(n_out: int, n_in: int) -> torch.Tensor:
        return ((torch.arange(n_out, device=labels.device) + 0.5) * (n_in / n_out)).long().clamp_(max=n_in - 1)

    return labels[centres(size[0], labels.shape[0])[:, None], centres(size[1], labels.shape[1])[None, :]]
