"""``clustvit convert SRC DST``: foreign weights (timm, mmseg, the ClustViT release) -> a
clustvit_ros safetensors checkpoint, with a report of where every key went."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from ..data.files import read_text
from ..model.checkpoints import save_checkpoint
from ..model.configs import HEADS
from ..model.importers import SCHEMES, import_weights


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """``clustvit convert SRC DST``: foreign weights -> a clustvit_ros safetensors checkpoint."""
    p = subparsers.add_parser("convert", help="import timm / mmseg / ClustViT weights",
                              description=add_parser.__doc__)
    p.add_argument("src", type=Path, help=".pth/.pt/.bin or .safetensors weights")
    p.add_argument("dst", type=Path, help="output .safetensors checkpoint")
    p.add_argument("--from", dest="scheme", choices=SCHEMES, help="naming (default: detected)")
    p.add_argument("--classes", help="class names: comma-separated, or a file with one per line")
    p.add_argument("--num-classes", type=int)
    p.add_argument("--num-heads", type=int, help="needed for non-standard widths")
    p.add_argument("--k", type=int, help="clusters (0: plain ViT)")
    p.add_argument("--ip", type=int, help="injection point (not stored in the weights)")
    p.add_argument("--img-size", type=int, nargs="+", metavar="PX",
                   help="training size H [W]: the position-embedding grid")
    p.add_argument("--head", choices=HEADS, help="head for timm backbones")
    p.add_argument("--seed", type=int, default=0, help="seed for freshly initialised modules")
    p.add_argument("--non-strict", action="store_true",
                   help="save even with unexplained missing/unexpected keys (still listed)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.classes:
        path = Path(args.classes)
        names = read_text(path).split("\n") if path.is_file() else args.classes.split(",")
        overrides["class_names"] = tuple(n.strip() for n in names if n.strip())
    for name in ("num_classes", "num_heads", "k", "ip", "head"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.img_size:
        overrides["img_size"] = (args.img_size[0], args.img_size[-1])
    torch.manual_seed(args.seed)
    model, report = import_weights(args.src, args.scheme, strict=not args.non_strict, **overrides)
    save_checkpoint(model, args.dst, {"imported_from": str(args.src), "scheme": report.scheme,
                                      "initialised": report.initialised, "ignored": report.ignored,
                                      "missing": report.missing, "unexpected": report.unexpected})
    print(report.summary())
    print(f"wrote {args.dst}: {model.config.variant} D={model.config.embed_dim} "
          f"depth={model.config.depth} k={model.config.k} ip={model.config.ip} "
          f"classes={model.config.num_classes}")
    return 0
