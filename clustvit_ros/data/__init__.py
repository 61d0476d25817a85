"""Data layer of clustvit_ros (no ROS imports): datasets in their on-disk formats, synthetic robot
scenes, pseudo-cluster targets and transforms.

Sample convention: ``dataset[i] -> (image uint8 (3, H, W) RGB tensor, mask int64 (H, W) tensor)``,
255 = ignore; see :mod:`clustvit_ros.data.datasets`.

The names below are imported on first use (PEP 562), so a torch-free submodule (``palettes``,
``synthetic_render``: what the demo camera needs) imports without loading torch.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "FolderDataset": "datasets", "SegmentationDataset": "datasets", "export_folder": "datasets",
    "read_classes_file": "datasets", "write_classes_file": "datasets",
    "ADE20K": "formats", "CamVid": "formats", "Cityscapes": "formats", "SUIM": "formats", "RumexWeeds": "formats",
    "CLASS_INFOS": "palettes", "IGNORE_INDEX": "palettes", "ClassInfo": "palettes",
    "colorize": "palettes", "get_class_info": "palettes",
    "SyntheticScenes": "synthetic", "save_preview": "synthetic", "render_scene": "synthetic_render",
    "pseudo_cluster_targets": "targets",
    "train_pipeline": "transforms",
    "DATASETS": "registry", "build_dataset": "registry",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value
