"""Model configuration: a frozen dataclass that rebuilds a ClustViT (stored in every checkpoint)."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ..data.palettes import default_palette

# name -> (embed_dim, depth, num_heads, mlp_hidden, cluster_hidden, training image side)
# The paper's variants (docs/model.md, "Variants"); the odd cluster widths are the released values.
VARIANTS: dict[str, tuple[int, int, int, int, int, int]] = {
    "tiny": (192, 12, 3, 768, 774, 512),
    "small": (384, 12, 6, 1536, 1548, 512),
    "base": (768, 12, 12, 3072, 3096, 512),
    "large": (1024, 24, 16, 4096, 4128, 640),
}
_DIM_FIELDS = ("embed_dim", "depth", "num_heads", "mlp_hidden", "cluster_hidden")
HEADS = ("mask", "linear", "fpn")
STEMS = ("patch", "conv")

# Upper bounds of every dimension a config may claim. A checkpoint's config is untrusted input, so
# these are checked first, before anything is built or allocated from it. Generous for real models
# (ViT-G/14: 1664 wide, 48 deep, MLP 8192); class ids are published as mono8: 256 classes at most.
# (ip lies below depth whenever it is used.)
DIMENSION_LIMITS = {"embed_dim": 2048, "depth": 48, "num_heads": 32, "mlp_hidden": 8192,
                    "cluster_hidden": 8192, "patch_size": 32, "img_size": 2048, "k": 64,
                    "head_layers": 8, "fpn_channels": 1024, "num_classes": 256}


@dataclass(frozen=True)
class ClustViTConfig:
    """Everything needed to build a :class:`~clustvit_ros.model.segmentor.ClustViT`.

    ``variant`` is a label; the dimensions are authoritative (``from_variant`` sets it to
    ``"custom"`` when a dimension is overridden). ``img_size`` is the training size: it defines
    the learned position-embedding grid, other input sizes use a bicubic resize of it.
    ``k = 0`` builds the plain dense ViT baseline (no Cluster module, no Regenerator).
    ``ip`` is the index of the block before which the Cluster module runs (0 <= ip < depth).
    ``stem``: ``patch`` (the ViT's strided patch conv) or ``conv`` (a stack of 3x3 stride-2 convs,
    :class:`~clustvit_ros.model.vit.ConvStem`; needs a power-of-two patch size).
    ``head``: ``mask`` (Segmenter's mask transformer, ``head_layers`` blocks), ``linear`` (one
    Linear per patch) or ``fpn`` (:class:`~clustvit_ros.model.fpn_head.FPNHead`: a light decoder
    of ``fpn_channels`` channels that fuses the conv stem's finer maps with the final tokens and
    predicts at a quarter of the patch size, half as wide there; needs ``stem: conv`` and a patch
    size of 8 or more).
    ``num_classes`` may be left 0 when ``class_names`` is given; missing names become
    ``class_<i>`` and a missing palette the VOC colour map. ``mean``/``std`` apply to RGB 0..255.
    """

    variant: str = "custom"
    embed_dim: int = 384
    depth: int = 12
    num_heads: int = 6
    mlp_hidden: int = 1536
    patch_size: int = 16
    patch_bias: bool = False
    stem: str = "patch"
    img_size: tuple[int, int] = (512, 512)
    num_classes: int = 0
    class_names: tuple[str, ...] = ()
    palette: tuple[tuple[int, int, int], ...] = ()
    k: int = 3
    ip: int = 3
    cluster_hidden: int = 1548
    head: str = "mask"
    head_layers: int = 2
    fpn_channels: int = 64
    drop_path: float = 0.1
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (127.5, 127.5, 127.5)

    def __post_init__(self) -> None:
        setf = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        setf("img_size", _pair(self.img_size, "img_size"))
        check_dimensions(self)
        setf("class_names", tuple(str(n) for n in self.class_names))
        setf("palette", tuple(tuple(int(v) for v in c) for c in self.palette))
        setf("mean", tuple(float(v) for v in self.mean))
        setf("std", tuple(float(v) for v in self.std))
        if self.num_classes == 0:
            setf("num_classes", len(self.class_names))
        if self.num_classes <= 0:
            raise ValueError("num_classes must be positive (or give class_names)")
        if not self.class_names:
            setf("class_names", tuple(f"class_{i}" for i in range(self.num_classes)))
        if not self.palette:
            setf("palette", tuple(map(tuple, default_palette(self.num_classes).tolist())))
        self._validate()

    def _validate(self) -> None:
        def need(ok: bool, why: str) -> None:
            if not ok:
                raise ValueError(f"invalid ClustViTConfig: {why}")

        need(self.variant in (*VARIANTS, "custom"), f"unknown variant {self.variant!r}")
        for name in ("embed_dim", "depth", "num_heads", "mlp_hidden", "patch_size", "head_layers",
                     "fpn_channels"):
            need(int(getattr(self, name)) > 0, f"{name} must be positive")
        need(self.embed_dim % self.num_heads == 0,
             f"embed_dim {self.embed_dim} not divisible by num_heads {self.num_heads}")
        need(all(s % self.patch_size == 0 for s in self.img_size),
             f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        need(self.k >= 0, "k must be >= 0 (0 = dense ViT baseline)")
        if self.k > 0:
            need(0 <= self.ip < self.depth, f"ip {self.ip} outside [0, depth={self.depth})")
            need(self.cluster_hidden > 0, "cluster_hidden must be positive")
        need(self.stem in STEMS, f"stem must be one of {STEMS}, got {self.stem!r}")
        power_of_two = self.patch_size >= 2 and self.patch_size & (self.patch_size - 1) == 0
        need(self.stem != "conv" or power_of_two,
             f"a conv stem needs a power-of-two patch size >= 2, got {self.patch_size}")
        need(self.head in HEADS, f"head must be one of {HEADS}, got {self.head!r}")
        need(self.head != "fpn" or (self.stem == "conv" and self.patch_size >= 8),
             "the fpn head fuses the conv stem's feature maps: it needs stem 'conv' and a patch "
             f"size of 8 or more, got stem {self.stem!r}, patch size {self.patch_size}")
        need(len(self.class_names) == self.num_classes,
             f"{len(self.class_names)} class names for num_classes={self.num_classes}")
        need(len(self.palette) == self.num_classes,
             f"palette has {len(self.palette)} colours for num_classes={self.num_classes}")
        need(all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in self.palette),
             "palette entries must be RGB triples in 0..255")
        need(len(self.mean) == 3 and len(self.std) == 3, "mean and std need 3 values (RGB)")
        need(all(s > 0 and math.isfinite(s) for s in self.std), "std must be positive")
        need(0.0 <= self.drop_path < 1.0, "drop_path must be in [0, 1)")

    @property
    def grid(self) -> tuple[int, int]:
        """The learned position-embedding grid (patches) of ``img_size``."""
        return self.img_size[0] // self.patch_size, self.img_size[1] // self.patch_size

    @property
    def logit_stride(self) -> int:
        """Pixels per cell of the head's logits: the patch size, a quarter of it for ``fpn``."""
        return self.patch_size // 4 if self.head == "fpn" else self.patch_size

    @classmethod
    def from_variant(cls, name: str, **overrides: Any) -> "ClustViTConfig":
        """The paper's ``tiny``/``small``/``base``/``large`` dims (k=3, ip=3), or ``custom``."""
        if name == "custom":
            return cls(variant="custom", **overrides)
        if name not in VARIANTS:
            raise ValueError(f"unknown variant {name!r}; choose from {(*VARIANTS, 'custom')}")
        dims = dict(zip(_DIM_FIELDS, VARIANTS[name][:5]))
        side = VARIANTS[name][5]
        changed = any(f in overrides and overrides[f] != dims[f] for f in _DIM_FIELDS)
        return cls(**{"variant": "custom" if changed else name, "img_size": (side, side),
                      **dims, **overrides})

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (tuples become lists)."""
        return _jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ClustViTConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error (ValueError naming them)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ClustViTConfig keys: {unknown}")
        return cls(**data)


def check_dimensions(config: ClustViTConfig) -> None:
    """Raise ValueError naming the first dimension that is not an int within DIMENSION_LIMITS
    (``img_size``: each side; ``num_classes``: also as the number of class names)."""
    for name, limit in DIMENSION_LIMITS.items():
        values = getattr(config, name)
        if name == "num_classes":
            values = (values, len(config.class_names))
        for value in values if isinstance(values, tuple) else (values,):
            if type(value) is not int:
                raise ValueError(f"invalid ClustViTConfig: {name} must be an int, got {value!r}")
            if value > limit:
                raise ValueError(f"invalid ClustViTConfig: {name} {value} exceeds {limit}")


def _pair(value: Any, name: str) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    h, w = value
    if not (isinstance(h, int) and isinstance(w, int)) or h <= 0 or w <= 0:
        raise ValueError(f"invalid ClustViTConfig: {name} must be positive ints, got {value!r}")
    return h, w


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj
