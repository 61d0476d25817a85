"""Patch-level class logits -> a label map at the image's resolution (bilinear upsample + argmax).

This runs on every frame and does not shrink with token merging, so it is kept cheap three ways:

- on the CPU, from :data:`BLOCKS_FROM_VALUES` class x pixel values on, and from
  :data:`BLOCKS_FROM_CELL_VALUES` of them per logit cell, each block of pixels mixes only the
  classes that can win one of them (:mod:`.block_argmax`, exact): with 150 classes a block keeps
  one class or a handful, also where merging put steps into the logits;
- otherwise all classes are upsampled, in bounded chunks with a running max, so C x H x W is never
  allocated at once (150 classes at 720p would be 550 MB in fp32). On a GPU this is the path at
  every class count: there the full upsample is cheap, and it needs no host synchronisation;
- an image above `LABEL_MAP_PIXELS` (1080p fits) gets the exact label map of the largest size
  within that limit (or the model input's, if larger), same aspect, enlarged by nearest neighbour:
  the per-class work stays at the limit whatever the camera, each camera pixel costs one look-up,
  and class boundaries move by less than the enlargement factor (2.5 px for 12.6 MP).

The first two give the labels of a plain full-resolution argmax; at a tie to within float rounding
either class may win, as in the reference, whose kernel rounds differently per channel count.
Logits of a bf16/fp16 model are interpolated in float32: interpolated in their own dtype, nearby
classes would round into ties (and the CPU's bf16 kernel rounds each product).
"""
from __future__ import annotations

import math
from functools import partial

import torch

from ..model.pixels import logits_to_pixels
from .block_argmax import axis_maps, block_argmax

# Below this many class x pixel values the blocks cost more than they save: a few classes at a small
# size upsample faster one by one (measured on a CPU: docs/decisions.md, "the label map decides
# block by block").
BLOCKS_FROM_VALUES = 1 << 20
# Each block tests every class on its cells, which pays only where a cell spreads over enough
# pixels x classes: the fpn head's quarter-patch logits of a few classes are below the bound,
# patch-level logits (256 pixels a cell) far above it (measured on a CPU: docs/decisions.md, "the
# label map decides block by block").
BLOCKS_FROM_CELL_VALUES = 512
LABEL_MAP_PIXELS = 1 << 21  # 2.1 MP: the largest label map computed per class (1920x1080 fits)


def upsample_argmax(patch_logits: torch.Tensor, padded_hw: tuple[int, int], model_hw: tuple[int, int],
                    image_hw: tuple[int, int], max_elements: int = 1 << 24,
                    blocks_from: int | None = BLOCKS_FROM_VALUES,
                    blocks_per_cell: int = BLOCKS_FROM_CELL_VALUES) -> torch.Tensor:
    """Class ids (H, W) uint8 at the image's resolution from (1, C, h, w) logits on cells that
    tile the padded model input: its patches, or the fpn head's quarter patches (the block
    weights come from the interpolation itself, so both are exact).

    The logits are mapped onto the image by :func:`~clustvit_ros.model.pixels.logits_to_pixels`
    (bilinear to the padded model input, cropped, resized to the image). Bilinear interpolation
    acts on each class separately, so classes are processed in chunks of at most `max_elements`
    output values with a running max; ties keep the lower class id, as argmax does. On the CPU,
    from `blocks_from` class x pixel values on (None: never, the benchmarks' reference) and from
    `blocks_per_cell` of them per logit cell, each block of pixels mixes only the classes that can
    win it instead (:mod:`.block_argmax`). In float32.
    Above `LABEL_MAP_PIXELS` (or the model input's size, if larger) the label map is made at that
    size and enlarged (see the module docstring).
    """
    patch_logits = patch_logits.float()
    limit = max(LABEL_MAP_PIXELS, model_hw[0] * model_hw[1])
    h, w = image_hw
    if h * w <= limit:
        return _exact(patch_logits, padded_hw, model_hw, image_hw, max_elements, blocks_from, blocks_per_cell)
    small_h = max(1, math.floor(h * math.sqrt(limit / (h * w))))
    small_w = max(1, min(w, limit // small_h))
    labels = _exact(patch_logits, padded_hw, model_hw, (small_h, small_w), max_elements, blocks_from,
                    blocks_per_cell)
    return _enlarge(labels, image_hw)


def _exact(patch_logits: torch.Tensor, padded_hw: tuple[int, int], model_hw: tuple[int, int],
           image_hw: tuple[int, int], max_elements: int, blocks_from: int | None,
           blocks_per_cell: int) -> torch.Tensor:
    """The argmax of every pixel at `image_hw`: block by block, or every class in chunks."""
    classes, h, w = patch_logits.shape[1:]
    values = classes * image_hw[0] * image_hw[1]
    if (blocks_from is not None and values >= max(blocks_from, blocks_per_cell * h * w)
            and patch_logits.device.type == "cpu"):
        return block_argmax(patch_logits, *axis_maps((h, w), padded_hw, model_hw, image_hw), max_elements)
    up = partial(logits_to_pixels, padded_hw=padded_hw, input_hw=model_hw, out_hw=image_hw)
    step = max(1, max_elements // (image_hw[0] * image_hw[1]))
    best_value, best = up(patch_logits[:, :step]).max(dim=1)
    for start in range(step, classes, step):
        value, index = up(patch_logits[:, start:start + step]).max(dim=1)
        better = value > best_value  # strict: ties keep the lower class id
        best_value = torch.where(better, value, best_value)
        best = torch.where(better, index + start, best)
    return best[0].to(torch.uint8)


def _enlarge(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(h, w) labels -> (H, W): each output pixel takes the label under its centre."""
    def centres(n_out: int, n_in: int) -> torch.Tensor:
        return ((torch.arange(n_out, device=labels.device) + 0.5) * (n_in / n_out)).long().clamp_(max=n_in - 1)

    return labels[centres(size[0], labels.shape[0])[:, None], centres(size[1], labels.shape[1])[None, :]]
