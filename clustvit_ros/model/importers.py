"""Import foreign weights: timm ViT, mmsegmentation Segmenter, official ClustViT release.

Each scheme is a table of key renames onto this package's names (docs/model.md). Tensors keep
their layout (timm ``attn.qkv`` and mmseg ``attn.attn.in_proj_*`` are both packed q, k, v) except:
a position embedding on another grid is resized bicubically (mmseg ``resize_pos_embed``), and
mmseg's 1x1 ``conv_seg`` becomes the linear head's ``Linear``. ``.pth`` files are read with
``torch.load(weights_only=True)``; ``.safetensors`` with safetensors. Every source key is either
loaded or listed in the :class:`ImportReport`; unexpected or missing keys that are not known to be
harmless (the timm classifier; the Cluster module / Regenerator / head a source cannot have) raise
:class:`CheckpointError` naming them unless ``strict=False``.
"""
from __future__ import annotations

import math
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .checkpoints import CheckpointError
from .configs import VARIANTS, ClustViTConfig
from .segmentor import ClustViT
from .vit import resize_pos_embed

SCHEMES = ("timm", "mmseg", "clustvit")

_MMSEG_BLOCK = (  # mmseg TransformerEncoderLayer suffix -> ours ({i} = layer, then weight|bias)
    (r"ln1\.(weight|bias)", r"norm1.\2"),
    (r"ln2\.(weight|bias)", r"norm2.\2"),
    (r"attn\.attn\.in_proj_(weight|bias)", r"attn.qkv.\2"),
    (r"attn\.attn\.out_proj\.(weight|bias)", r"attn.proj.\2"),
    (r"ffn\.layers\.0\.0\.(weight|bias)", r"mlp.fc1.\2"),
    (r"ffn\.layers\.1\.(weight|bias)", r"mlp.fc2.\2"),
)
_MMSEG = [
    (r"backbone\.patch_embed\.projection\.(weight|bias)", r"encoder.patch_embed.proj.\1"),
    (r"backbone\.(cls_token|pos_embed)", r"encoder.\1"),
    (r"backbone\.ln1\.(weight|bias)", r"encoder.norm.\1"),
    (r"backbone\.clusterer\.net\.0\.(weight|bias)", r"cluster.fc1.\1"),
    (r"backbone\.clusterer\.net\.2\.(weight|bias)", r"cluster.fc2.\1"),
    (r"backbone\.expand_mlp\.0\.(weight|bias)", r"regenerator.fc1.\1"),
    (r"backbone\.expand_mlp\.2\.(weight|bias)", r"regenerator.fc2.\1"),
    (r"decode_head\.(dec_proj|patch_proj|classes_proj|decoder_norm|mask_norm)\.(weight|bias)",
     r"head.\1.\2"),
    (r"decode_head\.cls_emb", r"head.cls_emb"),
    (r"decode_head\.conv_seg\.(weight|bias)", r"head.proj.\1"),
    *[(rf"backbone\.layers\.(\d+)\.{s}", rf"encoder.blocks.\1.{d}") for s, d in _MMSEG_BLOCK],
    *[(rf"decode_head\.layers\.(\d+)\.{s}", rf"head.blocks.\1.{d}") for s, d in _MMSEG_BLOCK],
]
_TIMM = [(r"(patch_embed\.proj\.(?:weight|bias)|cls_token|pos_embed|norm\.(?:weight|bias)|"
          r"blocks\.\d+\.(?:norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(?:weight|bias))",
          r"encoder.\1")]
RULES = {"timm": _TIMM, "mmseg": _MMSEG, "clustvit": _MMSEG}
# Our keys a source cannot provide (left at their fresh initialisation), and source keys that are
# known to be unused by the target model; both are still listed in the report.
_NEW_MODULES = {"timm": ("head.", "cluster.", "regenerator."),
                "mmseg": ("cluster.", "regenerator."), "clustvit": ()}
_UNUSED = {"timm": ("head.weight", "head.bias"), "mmseg": ("decode_head.conv_seg.",),
           "clustvit": ("decode_head.conv_seg.",)}


@dataclass
class ImportReport:
    """Where every key went; ``missing``/``unexpected`` are the unexplained ones (strict: error)."""

    scheme: str
    source: str
    loaded: list[str] = field(default_factory=list)
    initialised: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    resized: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{self.source} ({self.scheme}): {len(self.loaded)} tensors loaded"]
        for name in ("resized", "initialised", "ignored", "missing", "unexpected"):
            if getattr(self, name):
                lines.append(f"  {name}: {', '.join(getattr(self, name))}")
        return "\n".join(lines)


def read_weights(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(state dict, meta) of a ``.pth``/``.pt``/``.bin`` or ``.safetensors`` file.

    Unwraps mmseg/mmengine ``{"state_dict", "meta"}`` and ``{"model": ...}`` containers. A torch
    file is memory-mapped after :func:`_check_records`, so reading allocates nothing it claims.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            obj: Any = load_file(str(path))
        else:
            _check_records(path)
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except CheckpointError:
        raise
    except Exception as exc:  # unpickling refusals, truncated zips, bad headers
        raise CheckpointError(
            f"{path}: cannot be read as weights (weights_only=True): {exc}") from exc
    meta = obj.get("meta") if isinstance(obj, dict) else None
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: does not hold a state dict of tensors")
    return dict(obj), meta if isinstance(meta, dict) else {}


def _check_records(path: Path) -> None:
    """A torch zip file (``torch.save`` since 1.6) whose records are all stored as is, within the
    file, so their sizes are what the file holds; else :class:`CheckpointError` saying why."""
    try:
        with zipfile.ZipFile(path) as archive:
            records = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(f"{path}: not a zip-format torch file ({exc}); a legacy (torch < 1.6) "
                              "file must be loaded and saved again with torch.save first") from exc
    size = path.stat().st_size
    for record in records:
        if record.compress_type != zipfile.ZIP_STORED:
            raise CheckpointError(f"{path}: record {record.filename} is compressed, which torch.save "
                                  "never does; it is not inflated (a zip bomb?)")
        if record.file_size != record.compress_size or record.header_offset + record.file_size > size:
            raise CheckpointError(f"{path}: record {record.filename} claims {record.file_size} bytes "
                                  "that the file does not hold")


def _check_not_empty(state_dict: dict[str, Tensor], source: str) -> None:
    """Refuse tensors without elements: they would let a tiny file claim any dimension."""
    empty = [f"{k} {tuple(v.shape)}" for k, v in state_dict.items() if v.numel() == 0]
    if empty:
        raise CheckpointError(f"{source}: tensors with no elements: {', '.join(empty[:5])}"
                              + (f" and {len(empty) - 5} more" if len(empty) > 5 else ""))


def detect_scheme(state_dict: dict[str, Tensor]) -> str:
    """``clustvit`` (mmseg names + Cluster module), ``mmseg`` or ``timm``; else CheckpointError."""
    keys = set(state_dict)
    if any(k.startswith("backbone.clusterer.") for k in keys):
        return "clustvit"
    if any(k.startswith("backbone.layers.") for k in keys):
        return "mmseg"
    if "blocks.0.attn.qkv.weight" in keys:
        return "timm"
    if any(k.startswith("encoder.blocks.") for k in keys):
        raise CheckpointError("already in clustvit_ros naming; save it with save_checkpoint")
    raise CheckpointError(f"unknown weight naming (first keys: {sorted(keys)[:5]})")


def rename(state_dict: dict[str, Tensor], scheme: str
           ) -> tuple[dict[str, Tensor], dict[str, str], list[str]]:
    """A scheme's renames: (our key -> tensor, our key -> source key, unmatched source keys)."""
    rules = [(re.compile(p + r"$"), r) for p, r in RULES[scheme]]
    mapped: dict[str, Tensor] = {}
    origin: dict[str, str] = {}
    unmatched = []
    for key, value in state_dict.items():
        for pattern, repl in rules:
            if pattern.match(key):
                new = pattern.sub(repl, key)
                mapped[new], origin[new] = value, key
                break
        else:
            unmatched.append(key)
    return mapped, origin, unmatched


def infer_config(sd: dict[str, Tensor], scheme: str, meta: dict[str, Any] | None = None,
                 **overrides: Any) -> ClustViTConfig:
    """A config for renamed weights ``sd``: dims from tensor shapes, the rest from ``overrides``,
    the mmseg ``meta`` (cfg text, dataset classes/palette) or the paper's defaults."""
    meta = meta or {}
    try:
        d = sd["encoder.cls_token"].shape[-1]
        depth = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("encoder.blocks."))
        dims = dict(embed_dim=d, depth=depth,
                    mlp_hidden=sd["encoder.blocks.0.mlp.fc1.weight"].shape[0],
                    patch_size=sd["encoder.patch_embed.proj.weight"].shape[-1])
        n_pos = sd["encoder.pos_embed"].shape[1] - 1
    except (KeyError, ValueError, IndexError) as exc:
        raise CheckpointError(f"weights lack a complete ViT backbone ({exc})") from exc
    variant = next((n for n, v in VARIANTS.items()
                    if (v[0], v[1], v[3]) == (d, depth, dims["mlp_hidden"])), "custom")
    found: dict[str, Any] = dict(dims, patch_bias="encoder.patch_embed.proj.bias" in sd)
    if variant != "custom":
        found.update(num_heads=VARIANTS[variant][2], cluster_hidden=VARIANTS[variant][4])
    else:
        found["cluster_hidden"] = 4 * d
    side = math.isqrt(n_pos)
    if variant != "custom" and scheme == "timm":
        found["img_size"] = (VARIANTS[variant][5],) * 2
    elif side * side == n_pos:
        found["img_size"] = (side * dims["patch_size"],) * 2
    if "cluster.fc2.weight" in sd:
        found.update(k=sd["cluster.fc2.weight"].shape[0] - 1,
                     cluster_hidden=sd["cluster.fc1.weight"].shape[0])
        ip = re.search(r"injection_points\s*=\s*\[\s*(\d+)\s*\]", str(meta.get("cfg", "")))
        if ip:
            found["ip"] = int(ip.group(1))
    elif scheme == "mmseg":
        found["k"] = 0
    if "head.cls_emb" in sd:
        found.update(head="mask", num_classes=sd["head.cls_emb"].shape[1],
                     head_layers=1 + max(int(k.split(".")[2]) for k in sd
                                         if k.startswith("head.blocks.")))
    elif "head.proj.weight" in sd and scheme != "timm":
        found.update(head="linear", num_classes=sd["head.proj.weight"].shape[0])
    dataset = meta.get("dataset_meta") or {}
    n_cls = overrides.get("num_classes") or found.get("num_classes")
    if dataset.get("classes") and len(dataset["classes"]) == n_cls:
        found["class_names"] = tuple(dataset["classes"])
        if len(dataset.get("palette") or ()) == n_cls:
            found["palette"] = tuple(tuple(c) for c in dataset["palette"])
    kwargs = {"variant": variant, **found, **overrides}
    needed = [n for n in ("num_heads", "img_size") if n not in kwargs]
    if kwargs.get("k", 3) and scheme == "clustvit" and "ip" not in kwargs:
        needed.append("ip")
    if not (kwargs.get("num_classes") or kwargs.get("class_names")):
        needed.append("num_classes or class_names")
    if needed:
        raise CheckpointError(f"cannot infer {needed} from the {scheme} weights; pass them")
    try:
        return ClustViTConfig(**kwargs)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"inconsistent config for the {scheme} weights: {exc}") from exc


def import_weights(source: str | Path | dict[str, Tensor], scheme: str | None = None,
                   strict: bool = True, meta: dict[str, Any] | None = None,
                   **overrides: Any) -> tuple[ClustViT, ImportReport]:
    """Build a ClustViT (eval mode) from foreign weights (file or state dict); report every key.

    ``overrides`` are :class:`ClustViTConfig` fields (e.g. ``num_heads``, ``ip``,
    ``class_names``, ``k``) that the weights cannot tell or that should differ from the default.
    """
    if isinstance(source, dict):
        sd, label = source, "<state dict>"
    else:
        sd, file_meta = read_weights(source)
        meta, label = meta or file_meta, str(source)
    _check_not_empty(sd, label)
    scheme = scheme or detect_scheme(sd)
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    mapped, origin, unmatched = rename(sd, scheme)
    try:
        config = infer_config(mapped, scheme, meta, **overrides)
    except CheckpointError as exc:
        raise CheckpointError(f"{label}: {exc}") from exc
    with torch.device("meta"):  # shapes only: nothing is allocated before the file's tensors agree
        expected = {k: tuple(v.shape) for k, v in ClustViT(config).state_dict().items()}
    report = ImportReport(scheme, label)
    _adapt(mapped, expected, config, report)
    for key in unmatched + [origin[k] for k in mapped if k not in expected]:
        known = any(key.startswith(p) for p in _UNUSED[scheme])
        (report.ignored if known else report.unexpected).append(key)
    for key in expected:
        if key in mapped:
            report.loaded.append(key)
        elif key.startswith(_NEW_MODULES[scheme]):
            report.initialised.append(key)
        else:
            report.missing.append(key)
    shapes = [f"{origin[k]}: {tuple(mapped[k].shape)} vs model {k} {expected[k]}"
              for k in report.loaded if tuple(mapped[k].shape) != expected[k]]
    if shapes:
        raise CheckpointError(f"{label}: wrong shapes for the inferred config: {'; '.join(shapes)}")
    if strict and (report.missing or report.unexpected):
        raise CheckpointError(f"{label}: missing keys {report.missing}, "
                              f"unexpected keys {report.unexpected} (strict=False to accept)")
    model = ClustViT(config)  # the fresh modules draw from the caller's random state
    model.load_state_dict({k: mapped[k] for k in report.loaded}, strict=False)
    return model.eval(), report


def _adapt(mapped: dict[str, Tensor], expected: dict[str, tuple[int, ...]], config: ClustViTConfig,
           report: ImportReport) -> None:
    """In-place layout fixes: 1x1 conv head -> Linear, position embedding onto the config grid."""
    w = mapped.get("head.proj.weight")
    if w is not None and w.dim() == 4 and "head.proj.weight" in expected:
        mapped["head.proj.weight"] = w.flatten(1)
    pos = mapped.get("encoder.pos_embed")
    dst = config.grid
    if pos is not None and pos.dim() == 3 and pos.shape[1] - 1 != dst[0] * dst[1]:
        side = math.isqrt(pos.shape[1] - 1)
        if side * side != pos.shape[1] - 1:
            raise CheckpointError(f"pos_embed of {pos.shape[1] - 1} positions is not a square grid")
        mapped["encoder.pos_embed"] = resize_pos_embed(pos, (side, side), dst)
        report.resized.append(f"pos_embed {side}x{side} -> {dst[0]}x{dst[1]}")
