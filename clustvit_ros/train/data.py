"""Datasets for training and evaluation, built from a :class:`~.config.DataConfig`."""
from __future__ import annotations

import numpy as np
from torch.utils.data import DataLoader, Dataset

from ..data import SegmentationDataset, build_dataset, train_pipeline
from ..data.palettes import ClassInfo
from .config import DataConfig


class CachedDataset(SegmentationDataset):
    """``base``'s raw samples (``base.load``) read once into memory; transforms still apply per
    item with the usual ``(seed, epoch, index)`` generator. Loading uses ``workers`` processes."""

    def __init__(self, base: SegmentationDataset, transform=None, seed: int = 0,
                 workers: int = 0, progress: bool = False) -> None:
        super().__init__(transform, seed)
        self.class_info: ClassInfo = base.class_info
        loader = DataLoader(_Raw(base), batch_size=None, num_workers=workers, collate_fn=_identity)
        if progress:
            from tqdm import tqdm
            loader = tqdm(loader, desc=f"caching {type(base).__name__}", unit="img")
        self.samples: list[tuple[np.ndarray, np.ndarray]] = list(loader)

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.samples[index]


class _Raw(Dataset):
    def __init__(self, base: SegmentationDataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.base.load(index)


def raw_dataset(cfg: DataConfig, split: str, length: int | None = None) -> SegmentationDataset:
    """The untransformed ``split`` of the configured dataset (synthetic: ``length`` scenes)."""
    if cfg.dataset == "synthetic":
        return build_dataset("synthetic", split=split, seed=cfg.seed, size=tuple(cfg.size),
                             length=length)
    return build_dataset(cfg.dataset, cfg.root, split, seed=cfg.seed)


def train_dataset(cfg: DataConfig, progress: bool = False) -> SegmentationDataset:
    """The training split with the configured augmentation (cached in memory if asked)."""
    pipeline = train_pipeline(tuple(cfg.crop), scale=_opt_pair(cfg.scale),
                              ratio_range=tuple(cfg.ratio_range),
                              fixed_size=_opt_pair(cfg.fixed_size), cat_max_ratio=cfg.cat_max_ratio,
                              flip_prob=cfg.flip_prob, photometric=cfg.photometric,
                              blur_prob=cfg.blur_prob)
    base = raw_dataset(cfg, cfg.train_split, cfg.train_length)
    if cfg.cache:
        return CachedDataset(base, pipeline, cfg.seed, cfg.cache_workers, progress)
    base.transform = pipeline
    return base


def val_dataset(cfg: DataConfig, progress: bool = False) -> SegmentationDataset:
    """The raw validation split (its first ``val_length`` images), held in memory when synthetic
    (rendered once) or when ``cache`` is set."""
    base = raw_dataset(cfg, cfg.val_split, cfg.val_length)
    if cfg.dataset != "synthetic" and 0 < cfg.val_length < len(base):
        base = _Head(base, cfg.val_length)
    if cfg.dataset == "synthetic" or cfg.cache:
        return CachedDataset(base, workers=cfg.cache_workers, progress=progress)
    return base


class _Head(SegmentationDataset):
    """The first ``n`` items of ``base``."""

    def __init__(self, base: SegmentationDataset, n: int) -> None:
        super().__init__(base.transform, base.seed)
        self.base, self.n, self.class_info = base, n, base.class_info

    def __len__(self) -> int:
        return self.n

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.base.load(index)


def _identity(item):
    return item


def _opt_pair(value) -> tuple | None:
    return None if value is None else tuple(value)
