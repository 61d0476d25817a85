"""The project's own checkpoint format: one safetensors file whose metadata rebuilds the model.

Metadata (all strings): ``format = "clustvit_ros"``, ``format_version``, ``config`` (the
:class:`ClustViTConfig` as JSON, with class names and palette) and ``extra`` (JSON of the caller's
``extra_meta``, e.g. training iteration or source of an import).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .configs import ClustViTConfig
from .segmentor import ClustViT

FORMAT = "clustvit_ros"
FORMAT_VERSION = "1"


class CheckpointError(ValueError):
    """A checkpoint file that is missing, unreadable, or does not describe a consistent model."""


def save_checkpoint(model: ClustViT, path: str | os.PathLike,
                    extra_meta: dict | None = None) -> None:
    """Write ``model``'s weights and config to ``path`` (atomically: temp file, then rename)."""
    try:
        extra = json.dumps(extra_meta or {})
    except TypeError as exc:
        raise ValueError(f"extra_meta must be JSON-serialisable: {exc}") from exc
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION,
            "config": json.dumps(model.config.to_dict()), "extra": extra}
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata=meta)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # safetensors creates 0600; a shipped model must be readable
    os.replace(tmp, path)


def read_metadata(path: str | os.PathLike) -> tuple[ClustViTConfig, dict[str, Any]]:
    """The (config, extra_meta) stored in a checkpoint, without reading its tensors."""
    return _parse_metadata(_open(path, lambda f: f.metadata()), path)


def _parse_metadata(meta: dict[str, str] | None, path: str | os.PathLike
                    ) -> tuple[ClustViTConfig, dict[str, Any]]:
    if not meta or meta.get("format") != FORMAT or "config" not in meta:
        raise CheckpointError(f"{path}: not a {FORMAT} checkpoint (no config in its metadata); "
                              "foreign weights need `clustvit convert`")
    try:
        config = ClustViTConfig.from_dict(json.loads(meta["config"]))
        extra = json.loads(meta.get("extra", "{}"))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: inconsistent config in metadata: {exc}") from exc
    return config, extra


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> ClustViT:
    """Rebuild the model stored in ``path`` (in eval mode) on ``map_location``.

    The config is a claim, so nothing is allocated from it: its dimensions are bounded
    (:func:`~.configs.check_dimensions`), the model is laid out on the meta device (shapes, no
    memory), and the names, shapes and dtypes in the file's header are checked against it before a
    tensor is read; safetensors checks that the file holds the bytes its header promises. Raises
    :class:`CheckpointError` naming the file for a missing or corrupt file, a missing, unbounded or
    inconsistent config, and missing, unexpected, wrongly shaped or not floating-point tensors.
    """
    meta, shapes, dtypes = _open(path, _header)
    config, _ = _parse_metadata(meta, path)
    with torch.device("meta"):
        model = ClustViT(config)
    check_shapes(model, shapes, str(path))
    check_dtypes(model, dtypes, str(path))
    tensors = _open(path, lambda f: {k: f.get_tensor(k) for k in f.keys()})
    model.load_state_dict(tensors, strict=True, assign=True)
    return model.to(map_location).eval()


def check_shapes(model: torch.nn.Module, shapes: dict[str, tuple[int, ...]], source: str) -> None:
    """Raise :class:`CheckpointError` listing missing, unexpected and wrong-shape keys."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    problems = []
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    wrong = [f"{k}: file {tuple(shapes[k])} vs model {v}"
             for k, v in expected.items() if k in shapes and tuple(shapes[k]) != v]
    if wrong:
        problems.append(f"wrong shapes [{'; '.join(wrong)}]")
    if problems:
        raise CheckpointError(f"{source}: tensors do not match its config: " + ", ".join(problems))


FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64"})
"""The safetensors dtypes a floating-point tensor of the model may be stored in."""


def check_dtypes(model: torch.nn.Module, dtypes: dict[str, str], source: str) -> None:
    """Raise :class:`CheckpointError` listing tensors whose stored dtype (safetensors' name: F32,
    I8, BOOL, ...) is not floating point where the model's is: the model would not run on them."""
    wrong = [f"{k}: {dtypes[k]}" for k, v in model.state_dict().items()
             if v.is_floating_point() and dtypes.get(k, "F32") not in FLOAT_DTYPES]
    if wrong:
        raise CheckpointError(f"{source}: tensors stored in a dtype that is not floating point "
                              f"({', '.join(sorted(FLOAT_DTYPES))}): {'; '.join(wrong)}")


def _header(f) -> tuple[dict[str, str] | None, dict[str, tuple[int, ...]], dict[str, str]]:
    """A safetensors file's metadata, tensor shapes and tensor dtypes, from its header alone."""
    slices = {k: f.get_slice(k) for k in f.keys()}
    return (f.metadata(), {k: tuple(s.get_shape()) for k, s in slices.items()},
            {k: s.get_dtype() for k, s in slices.items()})


def _open(path: str | os.PathLike, read):
    if not Path(path).is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return read(f)
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"{path}: unreadable safetensors file: {exc}") from exc
