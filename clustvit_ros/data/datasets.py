"""Segmentation datasets: the common base, the sample convention, and the generic folder format.

Sample convention (every dataset in this package)
-------------------------------------------------
``dataset[i] -> (image, mask)`` with

* ``image``: ``torch.uint8`` tensor ``(3, H, W)``, **RGB**, not normalised (mean/std are applied
  on the device by the model side, which keeps host->device copies at one byte per channel);
* ``mask``: ``torch.int64`` tensor ``(H, W)``, class ids ``0..num_classes-1``, ``255`` = ignore.

``torch.utils.data.default_collate`` stacks these into ``uint8 (B, 3, H, W)`` and
``int64 (B, H, W)``. Training pipelines (``transforms.train_pipeline``) give every sample the crop
size; evaluation pipelines keep the mask at its original resolution (mIoU is taken there).

``dataset.load(i)`` returns the raw pair before any transform: ``image uint8 (H, W, 3)`` RGB numpy,
``mask`` uint8/uint16 ``(H, W)`` numpy, already mapped to the dataset's class ids.

Randomness: the transform of item ``i`` gets a generator seeded from ``(seed, epoch, i)`` (plus a
fixed tag that keeps it independent of other seeded streams, e.g. the synthetic scene itself), so
an augmented sample depends only on (seed, epoch, index), never on worker count or order. Call
``set_epoch(e)`` once per epoch (with ``persistent_workers=True`` the workers keep the value they
were started with).
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from .files import IMAGE_FILE_LIMIT, read_bytes, read_text
from .image_bytes import DEFAULT_MAX_PIXELS, ImageDecodeError, decode
from .palettes import IGNORE_INDEX, ClassInfo, default_palette
from .transforms import ToTensor

__all__ = [
    "SegmentationDataset", "FileDataset", "FolderDataset", "read_rgb", "read_label",
    "read_classes_file", "read_palette_file", "write_classes_file", "export_folder",
    "IMAGE_EXTENSIONS",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_to_tensor = ToTensor()
_AUGMENT_TAG = 0xA5A5  # separates augmentation streams from any other (seed, ...) stream


def read_rgb(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as ``uint8 (H, W, 3)`` RGB (8-bit conversion, alpha dropped).

    Read and decoded within bounds (:mod:`.files`, :mod:`.image_bytes`): a file that is not a
    regular one, is larger than ``IMAGE_FILE_LIMIT`` or declares more than `max_pixels` pixels is
    refused with a ValueError naming it, before it is decoded."""
    img = _decode_file(path, cv2.IMREAD_COLOR, max_pixels)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_label(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read a single-channel label image (8- or 16-bit) as stored, without colour conversion,
    within the bounds of :func:`read_rgb`.

    Palette ("P" mode) PNGs are read as their palette indices (through Pillow, which OpenCV
    would otherwise expand to colours)."""
    path = os.fspath(path)
    data = read_bytes(path, IMAGE_FILE_LIMIT)
    lab = _decode_file(path, cv2.IMREAD_UNCHANGED, max_pixels, data)
    if lab.ndim == 3:
        try:
            from PIL import Image
            with Image.open(io.BytesIO(data)) as im:
                if im.mode == "P":
                    return np.asarray(im, dtype=np.uint8).copy()
        except ImportError:  # pragma: no cover - Pillow is a matplotlib dependency
            pass
        raise ValueError(f"{path}: label images must be single-channel class ids, got "
                         f"{lab.shape[2]} channels")
    if lab.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"{path}: unsupported label dtype {lab.dtype}")
    return lab


def _decode_file(path: str | os.PathLike, flags: int, max_pixels: int, data: bytes | None = None) -> np.ndarray:
    try:
        data = read_bytes(path, IMAGE_FILE_LIMIT) if data is None else data
        return decode(data, max_pixels, flags, what="image", camera=False)
    except ImageDecodeError as exc:
        raise ImageDecodeError(f"{os.fspath(path)}: {exc}") from None


class SegmentationDataset(Dataset):
    """Base class: subclasses implement ``__len__`` and ``load(index)`` and set ``class_info``."""

    class_info: ClassInfo

    def __init__(self, transform: Callable | None = None, seed: int = 0):
        self.transform = transform
        self.seed = int(seed)
        self.epoch = 0

    # -- metadata ------------------------------------------------------------------------------
    @property
    def class_names(self) -> tuple[str, ...]:
        return self.class_info.names

    @property
    def palette(self) -> np.ndarray:
        return self.class_info.palette

    @property
    def num_classes(self) -> int:
        return self.class_info.num_classes

    @property
    def ignore_index(self) -> int:
        return self.class_info.ignore_index

    # -- access --------------------------------------------------------------------------------
    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def transform_rng(self, index: int) -> np.random.Generator:
        """The generator the transform of item ``index`` gets in the current epoch."""
        return np.random.default_rng(
            np.random.SeedSequence([self.seed, self.epoch, int(index), _AUGMENT_TAG]))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if index < 0:
            index += len(self)
        image, mask = self.load(index)
        if self.transform is not None:
            image, mask = self.transform(image, mask, self.transform_rng(index))
        if not isinstance(image, torch.Tensor):
            image, mask = _to_tensor(image, mask)
        return image, mask

    def __repr__(self) -> str:
        return f"{type(self).__name__}(len={len(self)}, classes={self.num_classes})"


class FileDataset(SegmentationDataset):
    """A list of (image file, mask file) pairs; ``convert_mask`` maps stored labels to ids."""

    def __init__(self, samples: Sequence[tuple[Path, Path]], class_info: ClassInfo,
                 transform: Callable | None = None, seed: int = 0):
        super().__init__(transform, seed)
        self.samples = [(Path(i), Path(m)) for i, m in samples]
        self.class_info = class_info

    def __len__(self) -> int:
        return len(self.samples)

    def read_mask(self, path: Path) -> np.ndarray:
        return read_label(path)

    def convert_mask(self, mask: np.ndarray) -> np.ndarray:
        return mask

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        img_path, mask_path = self.samples[index]
        image = read_rgb(img_path)
        mask = self.convert_mask(self.read_mask(mask_path))
        if mask.shape[:2] != image.shape[:2]:
            raise ValueError(f"{mask_path}: mask {mask.shape[:2]} != image {image.shape[:2]} "
                             f"({img_path})")
        return image, mask


def _parse_color(tok: str) -> tuple[int, int, int] | None:
    tok = tok.strip()
    if tok.startswith("#") and len(tok) == 7:
        try:
            return tuple(int(tok[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]
        except ValueError:
            return None
    return None


def read_classes_file(path: str | os.PathLike) -> tuple[list[str], np.ndarray | None]:
    """Parse ``classes.txt``: one class name per line, line ``i`` (ignoring blank lines and lines
    starting with ``//``) is class id ``i``. A line may end with an RGB colour ``#RRGGBB``
    (separated by whitespace); either every class has one or none does."""
    names, colors = [], []
    for raw in read_text(path).splitlines():
        line = raw.strip()
        if not line or line.startswith("//"):
            continue
        parts = line.rsplit(None, 1)
        col = _parse_color(parts[-1]) if len(parts) == 2 else None
        names.append(parts[0].strip() if col is not None else line)
        colors.append(col)
    if not names:
        raise ValueError(f"{path}: no class names")
    have = [c is not None for c in colors]
    if any(have) and not all(have):
        raise ValueError(f"{path}: give a #RRGGBB colour for every class or for none")
    return names, (np.array(colors, np.uint8) if all(have) else None)


def read_palette_file(path: str | os.PathLike) -> np.ndarray:
    """``palette.txt``: one ``R G B`` (0..255, spaces or commas) per line, in class order."""
    rows = []
    for raw in read_text(path).splitlines():
        line = raw.replace(",", " ").strip()
        if line and not line.startswith("//"):
            rows.append([int(v) for v in line.split()[:3]])
    return np.array(rows, np.uint8).reshape(-1, 3)


def write_classes_file(path: str | os.PathLike, names: Sequence[str],
                       palette: np.ndarray | None = None) -> None:
    """Write ``classes.txt`` in the format :func:`read_classes_file` reads."""
    lines = []
    for i, name in enumerate(names):
        if palette is not None:
            r, g, b = (int(v) for v in np.asarray(palette)[i])
            lines.append(f"{name} #{r:02x}{g:02x}{b:02x}")
        else:
            lines.append(str(name))
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


class FolderDataset(FileDataset):
    """Generic folder format::

        root/[split/]images/<stem>.{jpg,png,...}   RGB images
        root/[split/]masks/<stem>.png              single-channel class ids (8/16-bit), 255 = ignore
        root/[split/]classes.txt                   one class name per line, optional " #RRGGBB"
        root/[split/]palette.txt                   optional "R G B" per line (if not in classes.txt)

    ``classes.txt``/``palette.txt`` are looked up in the split folder first, then in ``root``.
    Without colours a default palette is used. Every image needs its mask.
    """

    def __init__(self, root: str | os.PathLike, split: str | None = None,
                 transform: Callable | None = None, seed: int = 0, *,
                 image_dir: str = "images", mask_dir: str = "masks", mask_suffix: str = ".png",
                 name: str = "folder"):
        root = Path(root)
        base = root / split if split else root
        img_dir, msk_dir = base / image_dir, base / mask_dir
        if not img_dir.is_dir() or not msk_dir.is_dir():
            raise FileNotFoundError(f"expected {img_dir} and {msk_dir}")
        cls_file = next((p for p in (base / "classes.txt", root / "classes.txt") if p.is_file()), None)
        if cls_file is None:
            raise FileNotFoundError(f"no classes.txt in {base} or {root}")
        names, palette = read_classes_file(cls_file)
        if palette is None:
            pal_file = next((p for p in (base / "palette.txt", root / "palette.txt") if p.is_file()),
                            None)
            palette = read_palette_file(pal_file) if pal_file else default_palette(len(names))
            if len(palette) < len(names):
                raise ValueError(f"{pal_file}: {len(palette)} colours for {len(names)} classes")
            palette = palette[:len(names)]
        images = sorted(p for p in img_dir.iterdir()
                        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        samples, missing = [], []
        for p in images:
            m = msk_dir / (p.stem + mask_suffix)
            (samples if m.is_file() else missing).append((p, m))
        if missing:
            raise FileNotFoundError(f"{len(missing)} image(s) without a mask in {msk_dir}, e.g. "
                                    f"{missing[0][1].name}")
        super().__init__(samples, ClassInfo(name, tuple(names), palette, IGNORE_INDEX),
                         transform, seed)
        self.root, self.split = root, split


def export_folder(dataset: SegmentationDataset, root: str | os.PathLike,
                  indices: Sequence[int] | None = None, image_ext: str = ".png") -> Path:
    """Write ``dataset.load(i)`` samples in the :class:`FolderDataset` format (e.g. to freeze a
    synthetic split or to convert a dataset once). Returns ``root``."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    write_classes_file(root / "classes.txt", dataset.class_names, dataset.palette)
    indices = range(len(dataset)) if indices is None else indices
    width = max(6, len(str(max(len(dataset) - 1, 0))))
    for i in indices:
        image, mask = dataset.load(int(i))
        stem = f"{int(i):0{width}d}"
        if not cv2.imwrite(str(root / "images" / (stem + image_ext)),
                           cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise OSError(f"cannot write {root / 'images' / (stem + image_ext)}")
        mask = np.asarray(mask)
        mask = mask.astype(np.uint8 if mask.max(initial=0) < 256 else np.uint16)
        cv2.imwrite(str(root / "masks" / (stem + ".png")), mask)
    return root
