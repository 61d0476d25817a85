"""``clustvit flops``: dense GFLOPs of a model variant and ClustViT's overhead terms, printed."""
from __future__ import annotations

import argparse
import math

from ..model.configs import HEADS, STEMS, VARIANTS, ClustViTConfig
from ..model.flops import block_flops, flop_terms, grid_of


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """``clustvit flops``: dense GFLOPs of a variant and ClustViT's overhead terms."""
    parser = subparsers.add_parser("flops", help="analytic GFLOPs of a model variant",
                                   description=add_parser.__doc__)
    parser.add_argument("--variant", choices=list(VARIANTS), required=True)
    parser.add_argument("--size", required=True, metavar="H[xW]", type=_size,
                        help="input size in pixels, e.g. 512 or 480x640")
    parser.add_argument("--classes", type=int, required=True, metavar="C")
    parser.add_argument("--k", type=int, default=3, help="clusters (0: plain ViT)")
    parser.add_argument("--ip", type=int, default=3, help="injection point (block index)")
    parser.add_argument("--head", choices=HEADS, default="mask", help="fpn needs --stem conv")
    parser.add_argument("--stem", choices=STEMS, default="patch")
    parser.set_defaults(func=_run)


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    try:
        h, w = (int(parts[0]), int(parts[-1])) if len(parts) <= 2 else (0, 0)
    except ValueError:
        h = w = 0
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"size must be H or HxW in pixels, got {text!r}")
    return h, w


def _run(args: argparse.Namespace) -> int:
    cfg = ClustViTConfig.from_variant(args.variant, num_classes=args.classes, k=args.k,
                                      ip=args.ip, head=args.head, stem=args.stem)
    grid = grid_of(cfg, args.size)
    p = grid[0] * grid[1]
    dense = flop_terms(cfg, grid)
    total = sum(dense.values()) / 1e9
    print(f"ViT-{args.variant} ({args.stem} stem) + {args.head} head, "
          f"{args.size[0]}x{args.size[1]} px -> {grid[0]}x{grid[1]} = {p} patch tokens, "
          f"{args.classes} classes")
    print(f"dense: {total:.3f} GFLOPs (patch embed {dense['patch_embed'] / 1e9:.3f}, "
          f"{cfg.depth} blocks {dense['blocks'] / 1e9:.3f}, head {dense['head'] / 1e9:.3f})")
    if cfg.k == 0:
        return 0
    d, m = cfg.embed_dim, cfg.mlp_hidden
    per_block = block_flops(1 + p, d, m) / 1e9
    print(f"ClustViT k={cfg.k} ip={cfg.ip}, M = kept tokens (1 + M + {cfg.k} tokens in blocks "
          f"{cfg.ip}..{cfg.depth - 1}):")
    print(f"  block(n) = 2*n*D*(4D + 2*mlp) + 4*n^2*D  (D={d}, mlp={m}); "
          f"block(1+P) = {per_block:.4f} GFLOPs")
    print(f"  GFLOPs(M) = dense - {cfg.depth - cfg.ip} * [block(1+P) - block(1+M+k)]"
          f" + Cluster MLP + Regenerator * (P - M)")
    cluster = 2 * p * (d * cfg.cluster_hidden + cfg.cluster_hidden * (cfg.k + 1)) / 1e9
    print(f"  Cluster MLP: {cluster:.4f} GFLOPs per frame (paid whenever it runs; "
          f"merge budget 0 skips it)")
    print(f"  Regenerator: {6 * d * d / 1e9:.6f} GFLOPs per merged token")
    cost = lambda kept: sum(flop_terms(cfg, grid, kept, True).values()) / 1e9  # noqa: E731
    print("  merged  kept   GFLOPs    vs dense")
    for frac in (0.0, 0.25, 0.5, 0.75, 0.9):
        kept = p - math.floor(frac * p)
        print(f"  {frac:6.0%}  {kept:5d}  {cost(kept):8.3f}  {total / cost(kept):6.2f}x")
    even = next((n for n in range(1, p + 1) if cost(p - n) < total), None)
    print(f"  break-even: merging pays from {even} merged tokens" if even else
          "  break-even: never (overhead exceeds the savings)")
    return 0
