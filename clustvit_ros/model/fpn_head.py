"""The ``fpn`` head: a light decoder that draws class logits at a quarter of the patch size.

A pole, a sign or a person is often narrower than a 16-px patch, so a head on the patch grid can
only paint it as a blurred cell. The conv stem has already computed maps at half and a quarter of
the patch stride (1/8 and 1/4 of the image for 16-px patches); this head fuses them with the final
tokens, FPN style: tokens projected to ``channels``, upsampled x2, plus a 1x1 projection of the
half-stride map, a separable conv to half the channels; upsampled x2 again, plus a projection of
the quarter-stride map, a separable conv; a 1x1 classifier. The quarter-stride stage is the
costly one (16 cells a token, memory-bound on a CPU), hence its half width. The head reads the
full token grid (after the Regenerator when the frame merged), so it works at every merge budget.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


class SeparableConv(nn.Module):
    """3x3 depthwise conv, 1x1 pointwise conv to ``c_out`` channels, BatchNorm, ReLU."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in, bias=False)
        self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.norm: nn.Module = nn.BatchNorm2d(c_out)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.norm(self.pointwise(self.depthwise(x))))

    def fold_batchnorm(self) -> None:
        """Fold the eval-mode BatchNorm into the pointwise conv (inference only)."""
        if isinstance(self.norm, nn.BatchNorm2d):
            self.pointwise = fuse_conv_bn_eval(self.pointwise, self.norm)
            self.norm = nn.Identity()


class FPNHead(nn.Module):
    """(B, P, D) tokens of an (h, w) grid + the stem's maps at (4h, 4w) and (2h, 2w) with
    ``skip_channels`` (quarter, half) channels -> (B, C, 4h, 4w) logits; ``channels`` wide at
    half stride, ``quarter_channels(channels)`` at quarter stride."""

    def __init__(self, dim: int, skip_channels: tuple[int, int], num_classes: int,
                 channels: int = 64) -> None:
        super().__init__()
        quarter, half = skip_channels
        fine = quarter_channels(channels)
        self.num_classes = num_classes
        self.tokens = nn.Linear(dim, channels)
        # no bias before a sum that a BatchNorm follows
        self.proj_half = nn.Conv2d(half, channels, 1, bias=False)
        self.fuse_half = SeparableConv(channels, fine)
        self.proj_quarter = nn.Conv2d(quarter, fine, 1, bias=False)
        self.fuse_quarter = SeparableConv(fine, fine)
        self.classifier = nn.Conv2d(fine, num_classes, 1)

    def forward(self, tokens: Tensor, grid: tuple[int, int], skips: tuple[Tensor, ...]) -> Tensor:
        if len(skips) != 2:
            raise ValueError(f"the fpn head needs the conv stem's quarter- and half-stride maps "
                             f"(Features.skips), got {len(skips)} maps")
        quarter, half = skips
        # every map is channels-last (the stem's are): (B, h*w, C) tokens viewed as NHWC, permuted
        x = self.tokens(tokens).view(tokens.shape[0], *grid, -1).permute(0, 3, 1, 2)
        x = self.fuse_half(self.proj_half(half).add_(_upsample(x, half)))
        x = self.fuse_quarter(self.proj_quarter(quarter).add_(_upsample(x, quarter)))
        # contiguous NCHW, as the other heads give: the label map reads the logits class by class
        return self.classifier(x).contiguous()

    def fold_batchnorm(self) -> None:
        """Fold the eval-mode BatchNorms into the convs before them (inference only)."""
        if self.training:
            raise RuntimeError("fold_batchnorm needs an eval-mode head (it fixes the running statistics)")
        self.fuse_half.fold_batchnorm()
        self.fuse_quarter.fold_batchnorm()


def quarter_channels(channels: int) -> int:
    """The width of the quarter-stride stage: half the head's, rounded up."""
    return (channels + 1) // 2


def _upsample(x: Tensor, like: Tensor) -> Tensor:
    """Bilinear (``align_corners=False``) to the size of `like`, twice `x`'s."""
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)
