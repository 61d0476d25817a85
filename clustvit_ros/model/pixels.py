"""Between pixels and the model, one definition for training, evaluation and the engine.

* :class:`Normalize`: ``(rgb - mean) / std`` per channel with the config's mean/std, RGB in 0..255;
* :func:`pad_to_patches`: zero-padding at the bottom and right to whole patches, *after*
  normalisation, so a padded pixel is the mean colour (as mmseg's ``AdaptivePadding``);
* :func:`logits_to_pixels`: patch-level logits back onto the input's pixels: bilinear to the padded
  size, the padding cropped off, so every pixel keeps its own patch's geometry (mmseg instead
  resizes the padded grid onto H x W, shifting pixels by up to a patch), then optionally resized.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .configs import ClustViTConfig


class Normalize:
    """The model's input normalisation, with its mean and std held on one device."""

    def __init__(self, config: ClustViTConfig, device: torch.device | str = "cpu") -> None:
        self.mean = torch.tensor(config.mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(config.std, device=device).view(1, 3, 1, 1)

    def __call__(self, rgb: Tensor) -> Tensor:
        """(B, 3, H, W) RGB in 0..255 -> normalised; float32 for integer input, else rgb's dtype."""
        dtype = rgb.dtype if rgb.is_floating_point() else torch.float32
        return (rgb.to(dtype) - self.mean.to(dtype)) / self.std.to(dtype)


def pad_to_patches(images: Tensor, patch_size: int) -> Tensor:
    """Zero-pad (B, C, H, W) at the bottom and right to multiples of ``patch_size``."""
    pad_h, pad_w = -images.shape[-2] % patch_size, -images.shape[-1] % patch_size
    return F.pad(images, (0, pad_w, 0, pad_h)) if pad_h or pad_w else images


def logits_to_pixels(logits: Tensor, padded_hw: tuple[int, int], input_hw: tuple[int, int],
                     out_hw: tuple[int, int] | None = None) -> Tensor:
    """(B, C, h, w) patch-level logits -> (B, C, H, W) on the pixels of an ``input_hw`` input that
    was padded to ``padded_hw``, resized to ``out_hw`` when given (bilinear, ``align_corners=False``).

    Without padding this is one interpolation straight to the output size; with padding two
    (to the padded size, crop, to ``out_hw``), so each output value mixes at most 3x3 cells.
    """
    out_hw = tuple(out_hw or input_hw)
    if tuple(padded_hw) == tuple(input_hw):
        return F.interpolate(logits, size=out_hw, mode="bilinear", align_corners=False)
    logits = F.interpolate(logits, size=padded_hw, mode="bilinear", align_corners=False)
    logits = logits[..., :input_hw[0], :input_hw[1]]
    if out_hw == tuple(input_hw):
        return logits
    return F.interpolate(logits, size=out_hw, mode="bilinear", align_corners=False)
