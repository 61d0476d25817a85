"""The training recipe: one YAML file (``recipes/*.yaml``) -> :class:`TrainConfig`.

Sections ``model`` (:class:`~clustvit_ros.model.configs.ClustViTConfig` fields; ``k: 0`` is the
dense ViT baseline; class names and palette default to the dataset's), ``data``, ``optim``,
``schedule`` and ``train``. Command-line overrides are ``section.key=value`` with YAML values,
e.g. ``model.k=0 train.out_dir=runs/dense schedule.iters=100``.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..data import DATASETS
from ..data.files import read_yaml
from ..runtime.options import RESIZE_POLICIES
from .class_weights import CLASS_WEIGHTS


@dataclass
class DataConfig:
    """Where samples come from and how they are augmented.

    ``synthetic`` renders ``train_length`` / ``val_length`` scenes of ``size`` (seeded by
    ``seed``); the other datasets read ``root`` (``train_split`` / ``val_split``). Training
    augmentation: ``fixed_size`` (exact resize) or ``scale`` + ``ratio_range`` (keep-ratio random
    resize), random ``crop`` with ``cat_max_ratio``, flip, photometric distortion, Gaussian blur
    (``blur_prob``), pad with 255.
    ``cache`` keeps the decoded training samples in memory (rendered or read once, before the
    first step, by ``cache_workers`` processes). ``val_length`` > 0 caps the validation images of
    a real dataset. ``num_workers``: DataLoader processes of the training loop. ``eval_resize``:
    the engine's resize policy for the periodic evaluation (fixed, keep_aspect or none).
    """

    dataset: str = "synthetic"
    root: str | None = None
    train_split: str = "train"
    val_split: str = "val"
    size: tuple[int, int] = (256, 256)
    train_length: int = 2000
    val_length: int = 200
    seed: int = 0
    crop: tuple[int, int] = (256, 256)
    scale: tuple[int, int] | None = None
    ratio_range: tuple[float, float] = (0.5, 2.0)
    fixed_size: tuple[int, int] | None = None
    cat_max_ratio: float = 1.0
    flip_prob: float = 0.5
    photometric: bool = True
    blur_prob: float = 0.0
    cache: bool = False
    cache_workers: int = 0
    num_workers: int = 0
    eval_resize: str = "fixed"


@dataclass
class OptimConfig:
    """``sgd`` (momentum) or ``adamw``; ``no_decay_norm_bias`` exempts 1-d params and embeddings."""

    name: str = "sgd"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    no_decay_norm_bias: bool = False
    grad_clip: float | None = None


@dataclass
class ScheduleConfig:
    """Poly decay over ``iters`` steps to ``min_lr``; linear warm-up over ``warmup_iters``."""

    iters: int = 80000
    power: float = 0.9
    min_lr: float = 1e-4
    warmup_iters: int = 0
    warmup_ratio: float = 1e-3


@dataclass
class LoopConfig:
    """The loop itself. ``amp``: ``none``, ``bf16`` or ``fp16`` (GPU only; fp32 on the CPU).
    Intervals are in steps (0 = never; the last step always evaluates and checkpoints).
    ``threads`` sets ``torch.set_num_threads`` (None: torch's default). ``init``: a clustvit_ros
    checkpoint of the same architecture whose weights start the training (e.g. ImageNet ViT
    weights brought in with ``clustvit convert``); None trains from scratch.
    ``merge_budget_range``: each step merges with a ``merge_budget`` drawn uniformly from this
    range (seeded by seed and step); ``[1, 1]`` is the paper (the model's own decision always),
    lower values make the blocks after the injection point see more tokens in training.
    ``class_weight``: ``none``, ``median_frequency`` or ``sqrt_median_frequency`` (pixel-loss
    weights from the training masks, :mod:`~clustvit_ros.train.class_weights`).
    ``distill_teacher``: ESPNet weights (:mod:`~clustvit_ros.train.teacher_espnet`) whose
    predictions on each augmented training batch add ``distill_weight`` x T^2 x
    KL(teacher || student) at temperature T = ``distill_temperature``
    (:mod:`~clustvit_ros.train.distill`); None: no distillation."""

    batch_size: int = 8
    seed: int = 0
    device: str = "auto"
    amp: str = "none"
    cluster_loss_weight: float = 0.1
    purity: float = 1.0
    ignore_index: int = 255
    log_interval: int = 50
    eval_interval: int = 8000
    checkpoint_interval: int = 8000
    out_dir: str = "runs/train"
    threads: int | None = None
    init: str | None = None
    merge_budget_range: tuple[float, float] = (1.0, 1.0)
    class_weight: str = "none"
    distill_teacher: str | None = None
    distill_weight: float = 0.5
    distill_temperature: float = 2.0


@dataclass
class TrainConfig:
    model: dict[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: LoopConfig = field(default_factory=LoopConfig)

    def __post_init__(self) -> None:
        def need(ok: bool, why: str) -> None:
            if not ok:
                raise ValueError(f"invalid training config: {why}")

        need(self.data.dataset in DATASETS, f"data.dataset must be one of {tuple(DATASETS)}")
        need(self.data.dataset == "synthetic" or bool(self.data.root),
             f"data.root is needed for dataset {self.data.dataset!r}")
        need(self.data.eval_resize in RESIZE_POLICIES,
             f"data.eval_resize must be one of {RESIZE_POLICIES}")
        need(0 <= self.data.flip_prob <= 1 and 0 <= self.data.blur_prob <= 1,
             "data.flip_prob and data.blur_prob must be in [0, 1]")
        need(self.optim.name in ("sgd", "adamw"), "optim.name must be 'sgd' or 'adamw'")
        need(self.optim.lr > 0 and self.schedule.iters > 0,
             "optim.lr and schedule.iters must be > 0")
        need(0 <= self.schedule.min_lr <= self.optim.lr, "schedule.min_lr must be in [0, optim.lr]")
        need(self.schedule.warmup_iters >= 0 and 0 < self.schedule.warmup_ratio <= 1,
             "schedule.warmup_iters >= 0 and warmup_ratio in (0, 1]")
        need(self.train.amp in ("none", "bf16", "fp16"), "train.amp must be none, bf16 or fp16")
        need(self.train.batch_size > 0, "train.batch_size must be > 0")
        need(0 < self.train.purity <= 1, "train.purity must be in (0, 1]")
        need(self.train.class_weight in CLASS_WEIGHTS,
             f"train.class_weight must be one of {CLASS_WEIGHTS}")
        need(self.train.distill_weight >= 0 and self.train.distill_temperature > 0,
             "train.distill_weight must be >= 0 and train.distill_temperature > 0")
        need(not self.train.distill_teacher or all(s % 8 == 0 for s in self.data.crop),
             f"data.crop {self.data.crop} must be a multiple of 8 for the distillation teacher")
        lo, hi = self.train.merge_budget_range
        need(0 <= lo <= hi <= 1, "train.merge_budget_range must be [lo, hi], 0 <= lo <= hi <= 1")
        patch = int(self.model.get("patch_size", 16))
        need(all(s % patch == 0 for s in self.data.crop),
             f"data.crop {self.data.crop} must be a multiple of the patch size {patch}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Build from nested dicts; unknown sections or keys are an error naming them."""
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown training config sections: {unknown}")
        kwargs: dict[str, Any] = {"model": dict(data.get("model") or {})}
        for f in dataclasses.fields(cls):
            if f.name != "model":
                kwargs[f.name] = _section(f.default_factory, f.name, data.get(f.name) or {})
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a YAML recipe and apply ``section.key=value`` overrides."""
    data = read_yaml(path) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a training config is a YAML mapping of sections")
    for item in overrides:
        apply_override(data, item)
    return TrainConfig.from_dict(data)


def apply_override(data: dict[str, Any], item: str) -> None:
    """Set ``data[section][key]`` from ``"section.key=value"`` (value parsed as YAML)."""
    key, sep, value = item.partition("=")
    parts = key.strip().split(".")
    if not sep or len(parts) != 2 or not all(parts):
        raise ValueError(f"override {item!r} is not of the form section.key=value")
    section = data.setdefault(parts[0], {})
    if not isinstance(section, dict):
        raise ValueError(f"override {item!r}: {parts[0]} is not a section")
    try:
        section[parts[1]] = yaml.safe_load(value)
    except (yaml.YAMLError, RecursionError) as exc:
        raise ValueError(f"override {item!r}: the value is not YAML that can be read ({type(exc).__name__})") from None


def _section(factory, name: str, values: dict[str, Any]):
    if not isinstance(values, dict):
        raise ValueError(f"training config section {name!r} must be a mapping, got {values!r}")
    types = typing.get_type_hints(factory)
    unknown = sorted(set(values) - set(types))
    if unknown:
        raise ValueError(f"unknown keys in training config section {name!r}: {unknown}")
    kwargs = {}
    for key, value in values.items():
        value = _typed(value, types[key])
        if value is _WRONG:
            raise ValueError(f"training config {name}.{key} must be {_describe(types[key])}, "
                             f"got {values[key]!r}")
        kwargs[key] = value
    return factory(**kwargs)


_WRONG = object()


def _typed(value: Any, hint: Any) -> Any:
    """`value` as the type `hint` names (int, float, str, bool, a fixed tuple of those, or one of
    them or None), or _WRONG. An int passes for a float; a bool passes for nothing but a bool."""
    args = typing.get_args(hint)
    if type(None) in args:  # X | None
        if value is None:
            return None
        (hint,) = [a for a in args if a is not type(None)]
        args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            return _WRONG
        items = tuple(_typed(v, a) for v, a in zip(value, args))
        return _WRONG if _WRONG in items else items
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str, bool) and type(value) is hint:
        return value
    return _WRONG


def _describe(hint: Any) -> str:
    args = typing.get_args(hint)
    if type(None) in args:
        return _describe(next(a for a in args if a is not type(None))) + " or null"
    if typing.get_origin(hint) is tuple:
        return f"a list of {len(args)}: [{', '.join(a.__name__ for a in args)}]"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[hint]


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
