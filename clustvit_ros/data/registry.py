"""Datasets by name, for configs and the CLI."""
from __future__ import annotations

import os
from typing import Callable

from .datasets import FolderDataset, SegmentationDataset
from .formats import ADE20K, SUIM, CamVid, Cityscapes, RumexWeeds
from .synthetic import SyntheticScenes

#: Dataset name -> class.
DATASETS = {"ade20k": ADE20K, "camvid": CamVid, "cityscapes": Cityscapes, "suim": SUIM, "rumexweeds": RumexWeeds,
            "folder": FolderDataset, "synthetic": SyntheticScenes}


def build_dataset(name: str, root: str | os.PathLike | None = None, split: str = "train",
                  transform: Callable | None = None, seed: int = 0, **kwargs) -> SegmentationDataset:
    """Build a dataset by name. ``synthetic`` ignores ``root`` and takes ``length`` (default
    1000) and ``size``; every other format needs ``root``."""
    key = name.lower()
    if key not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    if key == "synthetic":
        return SyntheticScenes(kwargs.pop("length", 1000), split=split, transform=transform,
                               seed=seed, **kwargs)
    if root is None:
        raise ValueError(f"dataset {name!r} needs a root folder")
    return DATASETS[key](root, split, transform, seed, **kwargs)
