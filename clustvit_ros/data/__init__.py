"""Data layer of clustvit_ros (no ROS imports): datasets in their on-disk formats, synthetic robot
scenes, pseudo-cluster targets and transforms.

Sample convention: ``dataset[i] -> (image uint8 (3, H, W) RGB tensor, mask int64 (H, W) tensor)``,
255 = ignore; see :mod:`clustvit_ros.data.datasets`.
"""
from __future__ import annotations

import os
from typing import Callable

from .datasets import (FolderDataset, SegmentationDataset, export_folder, read_classes_file,
                       write_classes_file)
from .formats import ADE20K, SUIM, Cityscapes, RumexWeeds
from .palettes import CLASS_INFOS, IGNORE_INDEX, ClassInfo, colorize, get_class_info
from .synthetic import SyntheticScenes, render_scene, save_preview
from .targets import pseudo_cluster_targets
from .transforms import train_pipeline

__all__ = [
    "ADE20K", "Cityscapes", "SUIM", "RumexWeeds", "FolderDataset", "SyntheticScenes",
    "SegmentationDataset", "ClassInfo", "CLASS_INFOS", "IGNORE_INDEX", "DATASETS",
    "build_dataset", "colorize", "get_class_info", "export_folder", "read_classes_file",
    "write_classes_file", "render_scene", "save_preview", "pseudo_cluster_targets",
    "train_pipeline",
]

#: Dataset name -> class, for configs and the CLI.
DATASETS = {"ade20k": ADE20K, "cityscapes": Cityscapes, "suim": SUIM, "rumexweeds": RumexWeeds,
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
