"""Synthetic, background-dominated robot scenes with pixel-exact masks, as a dataset.

The scenes themselves come from :mod:`.synthetic_render` (torch-free, also used by the demo
camera); this module makes them a reproducible map-style dataset and draws previews.

Determinism: :class:`SyntheticScenes` item ``i`` is a pure function of ``(seed, split, i)``;
:func:`render_scene` is a pure function of the generator state and the size.
"""
from __future__ import annotations

import math

import numpy as np

from .datasets import SegmentationDataset
from .palettes import SYNTHETIC, colorize
from .synthetic_render import CLASSES, PALETTE, render_scene

__all__ = ["CLASSES", "PALETTE", "SyntheticScenes", "render_scene", "save_preview"]

_SPLITS = {"train": 0, "val": 1, "test": 2}


class SyntheticScenes(SegmentationDataset):
    """Reproducible synthetic robot scenes as a map-style dataset of ``length`` items.

    Item ``i`` is a pure function of ``(seed, split, i)`` and ``size`` (``split`` in
    train/val/test; ``length`` only bounds the index), so the
    validation split is fixed and identical on every machine. Samples follow the package
    convention (``datasets.py``): ``image uint8 (3, H, W)``, ``mask int64 (H, W)``; ``transform``
    (a ``transforms`` pipeline) is applied before the tensor conversion with its own seeded rng.
    """

    class_info = SYNTHETIC

    def __init__(self, length: int, size: tuple[int, int] = (256, 256), seed: int = 0,
                 split: str = "train", transform=None):
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {sorted(_SPLITS)}, got {split!r}")
        if length < 0:
            raise ValueError("length must be >= 0")
        super().__init__(transform=transform, seed=seed)
        self.length = int(length)
        self.size = (int(size[0]), int(size[1]))
        self.split = split

    def __len__(self) -> int:
        return self.length

    def scene_rng(self, index: int) -> np.random.Generator:
        """The generator scene ``index`` is rendered from."""
        ss = np.random.SeedSequence([self.seed, _SPLITS[self.split], int(index)])
        return np.random.default_rng(ss)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        return render_scene(self.scene_rng(index), self.size)


def save_preview(path, n: int = 8, seed: int = 0, size: tuple[int, int] = (192, 256),
                 split: str = "val", dpi: int = 80) -> None:
    """Write a grid of ``n`` scenes (image above its coloured mask) with a class legend."""
    from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone
    from matplotlib.patches import Patch

    ds = SyntheticScenes(n, size=size, seed=seed, split=split)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    cell_w = 3.0
    fig_h = 2 * rows * cell_w * size[0] / size[1] + 0.9
    fig = Figure(figsize=(cell_w * cols, fig_h))
    axes = fig.subplots(2 * rows, cols, gridspec_kw=dict(wspace=0.03, hspace=0.03))
    axes = np.atleast_2d(axes)
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(n):
        img, mask = ds.load(i)
        r, c = 2 * (i // cols), i % cols
        axes[r, c].imshow(img)
        axes[r + 1, c].imshow(colorize(mask, PALETTE))
    handles = [Patch(color=np.asarray(PALETTE[i]) / 255.0, label=f"{i} {name}")
               for i, name in enumerate(CLASSES)]
    fig.legend(handles=handles, loc="lower center", ncol=len(CLASSES), fontsize=8, frameon=False)
    fig.suptitle(f"SyntheticScenes(seed={seed}, split={split!r}): image / mask", fontsize=10)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.06, top=0.95)
    fig.savefig(path, dpi=dpi, pil_kwargs={"optimize": True})
