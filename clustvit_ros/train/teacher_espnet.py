"""ESPNet (Mehta et al., ECCV 2018; p = 2, q = 8) as a frozen distillation teacher, and its loader.

Our own implementation of the network that github sacmehta/ESPNet (MIT licence) defines in
``train/Model.py`` (its decoder's last 3x3 conv reads the 19-channel level-1 concatenation; the
``test/Model.py`` variant reads 16): module and parameter names follow its state dict, so the
released CamVid weights (``pretrained/decoder/espnet_p_2_q_8_camvid.pth``) load strictly. They
have 12 outputs: the SegNet CamVid classes in our order (0 Sky .. 10 Bicyclist), 11 Unlabelled.

**Rule: the teacher runs on training frames only**: the training loop feeds it the augmented
training batches of ``data.train_split`` and nothing else, so a sequence left out of that split for
a held-out measurement (``train+val:-0006R0``) is never shown to it, and neither is the CamVid
test split. The released weights were trained on SegNet's CamVid train list, which includes
sequence 0006R0: figures on 0006R0 of a distilled student are held out for the student's data, not
for what the teacher learnt (docs/training.md says so where they are reported).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn


__all__ = ["ESPNetTeacher", "TeacherWeightsError", "load_espnet_teacher",
           "ESPNET_CAMVID_MEAN_BGR", "ESPNET_CAMVID_STD_BGR"]

# ESPNet's input normalisation (its train/loadData.py): over the 367 frames of CamVid train.txt
# read with cv2 (BGR, 0-255), the mean of the per-image channel means and the mean of the
# per-image channel standard deviations (np.mean / np.std of each channel, float32 sums).
ESPNET_CAMVID_MEAN_BGR = (110.331055, 108.40889, 105.03322)
ESPNET_CAMVID_STD_BGR = (72.12569, 72.690765, 69.90434)

_BN_EPS = 1e-3  # every BatchNorm of ESPNet


class TeacherWeightsError(ValueError):
    """A teacher weights file that does not fit the ESPNet architecture."""


class _Conv(nn.Module):
    """A bias-free (optionally strided or dilated) k x k convolution, 'same' padding."""

    def __init__(self, n_in: int, n_out: int, kernel: int, stride: int = 1,
                 dilation: int = 1) -> None:
        super().__init__()
        pad = (kernel - 1) // 2 * dilation
        self.conv = nn.Conv2d(n_in, n_out, kernel, stride, pad, dilation, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class _BNPReLU(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, eps=_BN_EPS)
        self.act = nn.PReLU(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(x))


class _ConvBNPReLU(nn.Module):
    def __init__(self, n_in: int, n_out: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(n_in, n_out, kernel, stride, (kernel - 1) // 2, bias=False)
        self.bn = nn.BatchNorm2d(n_out, eps=_BN_EPS)
        self.act = nn.PReLU(n_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class _SpatialPyramid(nn.Module):
    """The ESP module's reduce-split-transform-merge: a ``reduce`` x ``reduce`` projection to
    n_out / 5 channels, five 3x3 branches of dilation 1, 2, 4, 8, 16, the last four summed
    hierarchically (de-gridding), all five concatenated to n_out channels."""

    def __init__(self, n_in: int, n_out: int, reduce: int, stride: int) -> None:
        super().__init__()
        n = n_out // 5
        self.c1 = _Conv(n_in, n, reduce, stride)
        self.d1 = _Conv(n, n_out - 4 * n, 3)
        self.d2 = _Conv(n, n, 3, dilation=2)
        self.d4 = _Conv(n, n, 3, dilation=4)
        self.d8 = _Conv(n, n, 3, dilation=8)
        self.d16 = _Conv(n, n, 3, dilation=16)

    def pyramid(self, x: Tensor) -> Tensor:
        y = self.c1(x)
        acc = self.d2(y)
        outs = [self.d1(y), acc]
        for branch in (self.d4, self.d8, self.d16):
            acc = acc + branch(y)
            outs.append(acc)
        return torch.cat(outs, 1)


class _ESPDown(_SpatialPyramid):
    """The strided ESP module (half resolution)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__(n_in, n_out, reduce=3, stride=2)
        self.bn = nn.BatchNorm2d(n_out, eps=_BN_EPS)
        self.act = nn.PReLU(n_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.pyramid(x)))


class _ESPBlock(_SpatialPyramid):
    """The ESP module at full resolution, residual when ``residual`` (n_in == n_out)."""

    def __init__(self, n_in: int, n_out: int, residual: bool = True) -> None:
        super().__init__(n_in, n_out, reduce=1, stride=1)
        self.bn = _BNPReLU(n_out)
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        y = self.pyramid(x)
        return self.bn(x + y if self.residual else y)


def _avg_down(x: Tensor, times: int) -> Tensor:
    """The input image halved ``times`` times by 3x3 stride-2 average pooling (no parameters)."""
    for _ in range(times):
        x = F.avg_pool2d(x, 3, stride=2, padding=1)
    return x


class _Encoder(nn.Module):
    """ESPNet-C: a 1/8-resolution feature map with ``num_classes`` channels."""

    def __init__(self, num_classes: int, p: int, q: int) -> None:
        super().__init__()
        self.level1 = _ConvBNPReLU(3, 16, 3, stride=2)
        self.b1 = _BNPReLU(16 + 3)
        self.level2_0 = _ESPDown(16 + 3, 64)
        self.level2 = nn.ModuleList(_ESPBlock(64, 64) for _ in range(p))
        self.b2 = _BNPReLU(128 + 3)
        self.level3_0 = _ESPDown(128 + 3, 128)
        self.level3 = nn.ModuleList(_ESPBlock(128, 128) for _ in range(q))
        self.b3 = _BNPReLU(256)
        self.classifier = _Conv(256, num_classes, 1)


class ESPNetTeacher(nn.Module):
    """ESPNet with its light decoder: ``forward`` maps a normalised (B, 3, H, W) image, H and W
    multiples of 8, to (B, num_classes, H, W) logits; :meth:`logits` takes the package's uint8 RGB
    batch."""

    def __init__(self, num_classes: int = 12, p: int = 2, q: int = 8) -> None:
        super().__init__()
        if num_classes < 5:  # the decoder's ESP module splits the classes into five branches
            raise ValueError(f"ESPNet needs at least 5 classes, got {num_classes}")
        self.num_classes = num_classes
        self.encoder = _Encoder(num_classes, p, q)
        self.level3_C = _Conv(128 + 3, num_classes, 1)
        self.br = nn.BatchNorm2d(num_classes, eps=_BN_EPS)
        self.conv = _ConvBNPReLU(16 + 3 + num_classes, num_classes, 3)
        self.up_l3 = nn.Sequential(nn.ConvTranspose2d(num_classes, num_classes, 2, 2, bias=False))
        self.combine_l2_l3 = nn.Sequential(_BNPReLU(2 * num_classes),
                                           _ESPBlock(2 * num_classes, num_classes, residual=False))
        self.up_l2 = nn.Sequential(nn.ConvTranspose2d(num_classes, num_classes, 2, 2, bias=False),
                                   _BNPReLU(num_classes))
        self.classifier = nn.ConvTranspose2d(num_classes, num_classes, 2, 2, bias=False)
        self.register_buffer("mean", torch.tensor(ESPNET_CAMVID_MEAN_BGR).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(ESPNET_CAMVID_STD_BGR).view(1, 3, 1, 1),
                             persistent=False)

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 RGB (B, 3, H, W) -> the input ESPNet was trained on: BGR, minus the mean, over
        the std, then / 255 (its ToTensor divides the already normalised image by 255 again)."""
        bgr = images.flip(1).float()
        return (bgr - self.mean) / self.std / 255.0

    def logits(self, images: Tensor) -> Tensor:
        """(B, num_classes, H, W) logits of a uint8 RGB batch. The batch goes in channels-last
        (NHWC), the layout the CPU's convolutions run fastest in (the loader's model is in it)."""
        return self(self.normalize(images).contiguous(memory_format=torch.channels_last))

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if h % 8 or w % 8:
            raise ValueError(f"ESPNet needs an input whose sides are multiples of 8, got {h}x{w}")
        enc = self.encoder
        out0 = enc.level1(x)
        out0_cat = enc.b1(torch.cat([out0, _avg_down(x, 1)], 1))
        out1_0 = enc.level2_0(out0_cat)
        out1 = out1_0
        for block in enc.level2:
            out1 = block(out1)
        out1_cat = enc.b2(torch.cat([out1, out1_0, _avg_down(x, 2)], 1))
        out2_0 = enc.level3_0(out1_cat)
        out2 = out2_0
        for block in enc.level3:
            out2 = block(out2)
        out2_cat = enc.b3(torch.cat([out2_0, out2], 1))
        up3 = self.up_l3(self.br(enc.classifier(out2_cat)))
        up2 = self.up_l2(self.combine_l2_l3(torch.cat([self.level3_C(out1_cat), up3], 1)))
        return self.classifier(self.conv(torch.cat([up2, out0_cat], 1)))


def load_espnet_teacher(path: str | os.PathLike, device: str | torch.device = "cpu",
                        p: int = 2, q: int = 8) -> ESPNetTeacher:
    """The ESPNet weights in ``path`` (a PyTorch state dict; a DataParallel ``module.`` prefix is
    stripped) in a frozen :class:`ESPNetTeacher` in eval mode on ``device``, channels-last. The
    class count comes from the weights; any missing, unknown or misshapen tensor is a
    :class:`TeacherWeightsError`."""
    path = Path(path)
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except FileNotFoundError:
        raise FileNotFoundError(f"teacher weights {path} do not exist") from None
    except Exception as exc:  # pickle errors of every kind: not a plain tensor state dict
        raise TeacherWeightsError(f"{path}: not a PyTorch state dict of tensors ({exc})") from exc
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise TeacherWeightsError(f"{path}: not a state dict of tensors")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if "classifier.weight" not in state:
        raise TeacherWeightsError(f"{path}: no 'classifier.weight': not ESPNet decoder weights")
    with torch.random.fork_rng(devices=[]):  # the random init is overwritten: leave the RNG as is
        model = ESPNetTeacher(int(state["classifier.weight"].shape[0]), p, q)
    own = model.state_dict()
    expected = {k for k in own if not k.endswith("num_batches_tracked")}  # absent from old files
    given = {k for k in state if not k.endswith("num_batches_tracked")}
    missing, unknown = sorted(expected - given), sorted(given - expected)
    if missing or unknown:
        raise TeacherWeightsError(
            f"{path} does not fit ESPNet p={p} q={q}: {len(missing)} missing tensor(s) "
            f"{missing[:5]}, {len(unknown)} unknown tensor(s) {unknown[:5]}")
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(own[k].shape)})"
             for k in sorted(expected) if state[k].shape != own[k].shape]
    if wrong:
        raise TeacherWeightsError(f"{path}: {len(wrong)} tensor(s) of the wrong shape: {wrong[:5]}")
    model.load_state_dict({**own, **{k: state[k] for k in expected}}, strict=True)
    return model.requires_grad_(False).eval().to(device, memory_format=torch.channels_last)
