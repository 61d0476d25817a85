"""Class names and RGB palettes: the datasets the package knows, labels files, the default
palette, and mask colourisation. The one place labels and colours are defined.

Every palette is an ``(N, 3) uint8`` array in **RGB** order, row ``i`` is class id ``i``. Pixels
equal to the ignore index (255) have no class; :func:`colorize` paints them ``ignore_color``.

Sources: ADE20K and Cityscapes names/colours as in mmsegmentation's dataset METAINFO (the
ADE20K name ``'bed '`` loses its trailing blank); SUIM from the dataset's own 3-bit RGB code
(R is the most significant bit, so class id == code); RumexWeeds as in the ClustViT repository.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .files import read_yaml

IGNORE_INDEX = 255


@dataclass(frozen=True)
class ClassInfo:
    """Names and colours of one label set. ``palette[i]`` is the RGB colour of ``names[i]``."""

    name: str
    names: tuple[str, ...]
    palette: np.ndarray = field(repr=False)
    ignore_index: int = IGNORE_INDEX

    def __post_init__(self) -> None:
        pal = np.asarray(self.palette, dtype=np.uint8).reshape(-1, 3)
        if len(pal) != len(self.names):
            raise ValueError(f"{self.name}: {len(self.names)} names but {len(pal)} colours")
        pal.setflags(write=False)
        object.__setattr__(self, "palette", pal)
        object.__setattr__(self, "names", tuple(self.names))

    @property
    def num_classes(self) -> int:
        return len(self.names)


def default_palette(n: int) -> np.ndarray:
    """A deterministic, well-spread ``(n, 3) uint8`` RGB palette (PASCAL VOC bit-interleaving)."""
    ids = np.arange(n, dtype=np.int64)
    pal = np.zeros((n, 3), dtype=np.int64)
    c = ids.copy()
    for shift in range(7, -1, -1):
        for ch in range(3):
            pal[:, ch] |= ((c >> ch) & 1) << shift
        c >>= 3
    return pal.astype(np.uint8)


def colorize(mask: np.ndarray, palette: np.ndarray, ignore_index: int | None = IGNORE_INDEX,
             ignore_color: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """Label map ``(H, W)`` -> RGB ``(H, W, 3) uint8`` in one table look-up.

    Ids outside the palette, and ``ignore_index`` unless it is None, get ``ignore_color``.
    """
    mask = np.asarray(mask)
    pal = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    lut = np.empty((max(len(pal), 256) + 1, 3), dtype=np.uint8)
    lut[:] = ignore_color
    lut[:len(pal)] = pal
    if ignore_index is not None and 0 <= ignore_index < len(lut):
        lut[ignore_index] = ignore_color
    if mask.dtype == np.uint8:
        return lut[mask]
    idx = mask.astype(np.int64, copy=False)
    return lut[np.where((idx < 0) | (idx >= len(lut)), len(lut) - 1, idx)]


class LabelsError(ValueError):
    """A labels file that cannot be used; the message names the file and the problem."""


def read_labels_file(path: str | Path, num_classes: int) -> ClassInfo:
    """A labels YAML (``classes: [{name: sky, color: [r, g, b]}, ...]``, class-id order, as
    ``tools/make_labels.py`` writes them) for a model of ``num_classes`` classes."""
    path = Path(path)
    try:
        data = read_yaml(path)
    except (OSError, ValueError) as exc:  # missing, not a regular file, too large, not YAML
        raise LabelsError(f"labels file {path}: {exc}") from exc
    entries = data.get("classes") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise LabelsError(f"labels file {path}: expected a top-level 'classes' list")
    if len(entries) != num_classes:
        raise LabelsError(f"labels file {path}: lists {len(entries)} classes but the model has {num_classes}")
    names, colors = [], []
    for i, entry in enumerate(entries):
        name, color = (entry.get("name"), entry.get("color")) if isinstance(entry, dict) else (None, None)
        if (not isinstance(name, str) or not isinstance(color, list) or len(color) != 3
                or not all(isinstance(c, int) and 0 <= c <= 255 for c in color)):
            raise LabelsError(f"labels file {path}: entry {i} needs a 'name' and a 'color' of three 0-255 ints")
        names.append(name)
        colors.append(color)
    label_set = data.get("name")
    return ClassInfo(label_set if isinstance(label_set, str) else path.stem, tuple(names), np.array(colors))


ADE20K_CLASSES = (
    'wall', 'building', 'sky', 'floor', 'tree', 'ceiling', 'road', 'bed', 'windowpane', 'grass',
    'cabinet', 'sidewalk', 'person', 'earth', 'door', 'table', 'mountain', 'plant', 'curtain',
    'chair', 'car', 'water', 'painting', 'sofa', 'shelf', 'house', 'sea', 'mirror', 'rug', 'field',
    'armchair', 'seat', 'fence', 'desk', 'rock', 'wardrobe', 'lamp', 'bathtub', 'railing',
    'cushion', 'base', 'box', 'column', 'signboard', 'chest of drawers', 'counter', 'sand', 'sink',
    'skyscraper', 'fireplace', 'refrigerator', 'grandstand', 'path', 'stairs', 'runway', 'case',
    'pool table', 'pillow', 'screen door', 'stairway', 'river', 'bridge', 'bookcase', 'blind',
    'coffee table', 'toilet', 'flower', 'book', 'hill', 'bench', 'countertop', 'stove', 'palm',
    'kitchen island', 'computer', 'swivel chair', 'boat', 'bar', 'arcade machine', 'hovel', 'bus',
    'towel', 'light', 'truck', 'tower', 'chandelier', 'awning', 'streetlight', 'booth',
    'television receiver', 'airplane', 'dirt track', 'apparel', 'pole', 'land', 'bannister',
    'escalator', 'ottoman', 'bottle', 'buffet', 'poster', 'stage', 'van', 'ship', 'fountain',
    'conveyer belt', 'canopy', 'washer', 'plaything', 'swimming pool', 'stool', 'barrel',
    'basket', 'waterfall', 'tent', 'bag', 'minibike', 'cradle', 'oven', 'ball', 'food', 'step',
    'tank', 'trade name', 'microwave', 'pot', 'animal', 'bicycle', 'lake', 'dishwasher', 'screen',
    'blanket', 'sculpture', 'hood', 'sconce', 'vase', 'traffic light', 'tray', 'ashcan', 'fan',
    'pier', 'crt screen', 'plate', 'monitor', 'bulletin board', 'shower', 'radiator', 'glass',
    'clock', 'flag')

ADE20K_PALETTE = (
    (120, 120, 120), (180, 120, 120), (6, 230, 230), (80, 50, 50), (4, 200, 3), (120, 120, 80),
    (140, 140, 140), (204, 5, 255), (230, 230, 230), (4, 250, 7), (224, 5, 255), (235, 255, 7),
    (150, 5, 61), (120, 120, 70), (8, 255, 51), (255, 6, 82), (143, 255, 140), (204, 255, 4),
    (255, 51, 7), (204, 70, 3), (0, 102, 200), (61, 230, 250), (255, 6, 51), (11, 102, 255),
    (255, 7, 71), (255, 9, 224), (9, 7, 230), (220, 220, 220), (255, 9, 92), (112, 9, 255),
    (8, 255, 214), (7, 255, 224), (255, 184, 6), (10, 255, 71), (255, 41, 10), (7, 255, 255),
    (224, 255, 8), (102, 8, 255), (255, 61, 6), (255, 194, 7), (255, 122, 8), (0, 255, 20),
    (255, 8, 41), (255, 5, 153), (6, 51, 255), (235, 12, 255), (160, 150, 20), (0, 163, 255),
    (140, 140, 140), (250, 10, 15), (20, 255, 0), (31, 255, 0), (255, 31, 0), (255, 224, 0),
    (153, 255, 0), (0, 0, 255), (255, 71, 0), (0, 235, 255), (0, 173, 255), (31, 0, 255),
    (11, 200, 200), (255, 82, 0), (0, 255, 245), (0, 61, 255), (0, 255, 112), (0, 255, 133),
    (255, 0, 0), (255, 163, 0), (255, 102, 0), (194, 255, 0), (0, 143, 255), (51, 255, 0),
    (0, 82, 255), (0, 255, 41), (0, 255, 173), (10, 0, 255), (173, 255, 0), (0, 255, 153),
    (255, 92, 0), (255, 0, 255), (255, 0, 245), (255, 0, 102), (255, 173, 0), (255, 0, 20),
    (255, 184, 184), (0, 31, 255), (0, 255, 61), (0, 71, 255), (255, 0, 204), (0, 255, 194),
    (0, 255, 82), (0, 10, 255), (0, 112, 255), (51, 0, 255), (0, 194, 255), (0, 122, 255),
    (0, 255, 163), (255, 153, 0), (0, 255, 10), (255, 112, 0), (143, 255, 0), (82, 0, 255),
    (163, 255, 0), (255, 235, 0), (8, 184, 170), (133, 0, 255), (0, 255, 92), (184, 0, 255),
    (255, 0, 31), (0, 184, 255), (0, 214, 255), (255, 0, 112), (92, 255, 0), (0, 224, 255),
    (112, 224, 255), (70, 184, 160), (163, 0, 255), (153, 0, 255), (71, 255, 0), (255, 0, 163),
    (255, 204, 0), (255, 0, 143), (0, 255, 235), (133, 255, 0), (255, 0, 235), (245, 0, 255),
    (255, 0, 122), (255, 245, 0), (10, 190, 212), (214, 255, 0), (0, 204, 255), (20, 0, 255),
    (255, 255, 0), (0, 153, 255), (0, 41, 255), (0, 255, 204), (41, 0, 255), (41, 255, 0),
    (173, 0, 255), (0, 245, 255), (71, 0, 255), (122, 0, 255), (0, 255, 184), (0, 92, 255),
    (184, 255, 0), (0, 133, 255), (255, 214, 0), (25, 194, 194), (102, 255, 0), (92, 0, 255))

CITYSCAPES_CLASSES = (
    'road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light', 'traffic sign',
    'vegetation', 'terrain', 'sky', 'person', 'rider', 'car', 'truck', 'bus', 'train', 'motorcycle',
    'bicycle')

CITYSCAPES_PALETTE = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32))

# SUIM: class id == 3-bit code (R, G, B) with R the most significant bit; colour == code * 255.
SUIM_CODES = ('BW', 'HD', 'PF', 'WR', 'RO', 'RI', 'FV', 'SR')
SUIM_CLASSES = (
    'background waterbody', 'human divers', 'plants/sea-grass', 'wrecks/ruins',
    'robots/instruments', 'reefs/invertebrates', 'fish/vertebrates', 'sea-floor/rocks')
SUIM_PALETTE = tuple(((c >> 2) * 255, ((c >> 1) & 1) * 255, (c & 1) * 255) for c in range(8))

RUMEXWEEDS_CLASSES = ('background', 'rumex_obtusifolius', 'rumex_crispus')
RUMEXWEEDS_PALETTE = ((0, 0, 0), (0, 255, 0), (0, 0, 255))

# CamVid (SegNet tutorial ids 0..10; 11 Unlabelled is ignored): the dataset's usual colours.
CAMVID_CLASSES = ('Sky', 'Building', 'Pole', 'Road', 'Pavement', 'Tree', 'SignSymbol', 'Fence',
                  'Car', 'Pedestrian', 'Bicyclist')
CAMVID_PALETTE = (
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
    (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192))

SYNTHETIC_CLASSES = ('sky', 'ground', 'crop', 'weed', 'obstacle', 'person', 'tree', 'path')
SYNTHETIC_PALETTE = (
    (70, 130, 180),   # sky: steel blue
    (152, 110, 60),   # ground (grass or soil field): brown
    (0, 200, 0),      # crop: green
    (255, 220, 0),    # weed: yellow
    (255, 80, 0),     # obstacle (rocks, boxes): orange
    (220, 20, 60),    # person: crimson
    (0, 90, 30),      # tree / other vegetation: dark green
    (190, 190, 190))  # path / track: light grey

ADE20K = ClassInfo('ade20k', ADE20K_CLASSES, np.array(ADE20K_PALETTE))
CAMVID = ClassInfo('camvid', CAMVID_CLASSES, np.array(CAMVID_PALETTE))
CITYSCAPES = ClassInfo('cityscapes', CITYSCAPES_CLASSES, np.array(CITYSCAPES_PALETTE))
SUIM = ClassInfo('suim', SUIM_CLASSES, np.array(SUIM_PALETTE))
RUMEXWEEDS = ClassInfo('rumexweeds', RUMEXWEEDS_CLASSES, np.array(RUMEXWEEDS_PALETTE))
SYNTHETIC = ClassInfo('synthetic', SYNTHETIC_CLASSES, np.array(SYNTHETIC_PALETTE))

CLASS_INFOS: dict[str, ClassInfo] = {
    c.name: c for c in (ADE20K, CAMVID, CITYSCAPES, SUIM, RUMEXWEEDS, SYNTHETIC)}


def get_class_info(name: str) -> ClassInfo:
    """Look up a known label set by name (``ade20k``, ``camvid``, ``cityscapes``, ``suim``, ``rumexweeds``,
    ``synthetic``)."""
    try:
        return CLASS_INFOS[name.lower()]
    except KeyError:
        raise KeyError(f"unknown label set {name!r}; known: {sorted(CLASS_INFOS)}") from None
