"""Budget sweeps: evaluate a checkpoint over a grid of merge_budget x merge_bias values and write a
markdown table and a plot of mIoU against GFLOPs (ClustViT curves, the dense baseline a point)."""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict
from pathlib import Path

import torch

from ..model.budget import MergeBudget
from ..model.checkpoints import read_metadata
from ..runtime.engine import Engine
from .data import val_dataset
from .evaluate import (EvalResult, add_dataset_arguments, data_config_from_args, evaluate,
                       open_engine)


MAX_CLASS_COLUMNS = 20  # a per-class table beyond this many classes is unreadable


def budget_grid(budgets: list[float], biases: list[float]) -> list[MergeBudget]:
    """Every (budget, bias) pair; budget 0 (the dense path, bias has no effect) only once."""
    grid = [MergeBudget(b, s) for b in sorted(set(budgets), reverse=True) if b > 0
            for s in sorted(set(biases))]
    return grid + [MergeBudget(0.0, 0.0)] if 0 in budgets else grid


def sweep(engine: Engine, dataset, grid: list[MergeBudget], warmup: int = 3,
          progress: bool = False) -> list[EvalResult]:
    """One :func:`evaluate` per budget of ``grid`` (the same images, the same engine)."""
    return [evaluate(engine, dataset, budget, warmup, progress) for budget in grid]


def markdown_table(results: list[EvalResult], baseline: EvalResult | None = None) -> str:
    """One row per setting (the baseline first); the GFLOPs ratio is against the baseline when
    given, else against the model's own dense path."""
    head = ("| model | merge_budget | merge_bias | mIoU | GFLOPs (mean ± std) | GFLOPs↓ "
            "| kept / merged tokens | latency p50 / p95 (ms) |")
    lines = [head, "|" + "---|" * 8]

    def row(name: str, r: EvalResult, budget: str, bias: str) -> None:
        ref = baseline.gflops_mean if baseline else r.dense_gflops
        lines.append(f"| {name} | {budget} | {bias} | {100 * r.miou:.2f} | {r.gflops_mean:.3f} ± "
                     f"{r.gflops_std:.3f} | {ref / r.gflops_mean:.2f}× | {r.kept_mean:.1f} / "
                     f"{r.merged_mean:.1f} | {r.latency_p50_ms:.1f} / {r.latency_p95_ms:.1f} |")

    if baseline:
        row("ViT (dense baseline)", baseline, "–", "–")
    for r in results:
        row("ClustViT", r, f"{r.merge_budget:g}", f"{r.merge_bias:+g}")
    return "\n".join(lines) + "\n"


def per_class_table(results: list[EvalResult], baseline: EvalResult | None = None) -> str:
    """Per-class IoU (%) of every setting, one row each (the baseline first), classes as columns."""
    names = list((baseline or results[0]).iou)
    lines = ["| model | merge_budget | merge_bias | " + " | ".join(names) + " |",
             "|" + "---|" * (3 + len(names))]

    def row(name: str, r: EvalResult, budget: str, bias: str) -> None:
        cells = ["n/a" if math.isnan(r.iou[n]) else f"{100 * r.iou[n]:.1f}" for n in names]
        lines.append(f"| {name} | {budget} | {bias} | " + " | ".join(cells) + " |")

    if baseline:
        row("ViT (dense baseline)", baseline, "–", "–")
    for r in results:
        row("ClustViT", r, f"{r.merge_budget:g}", f"{r.merge_bias:+g}")
    return "\n".join(lines) + "\n"


def plot(results: list[EvalResult], path: str | Path, baseline: EvalResult | None = None,
         title: str = "") -> None:
    """mIoU against mean GFLOPs: one line per merge_bias through the budgets (from budget 0, the
    dense path, to 1), budget values written along the bias-0 line, the default (budget 1, bias 0)
    ringed, the dense baseline a star with dotted guides at its mIoU - 1 and half its GFLOPs."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    dense = [r for r in results if r.merge_budget == 0]
    for bias in sorted({r.merge_bias for r in results if r.merge_budget > 0}):
        pts = dense + sorted((r for r in results if r.merge_bias == bias and r.merge_budget > 0),
                             key=lambda r: r.merge_budget)
        ax.plot([r.gflops_mean for r in pts], [100 * r.miou for r in pts], marker="o",
                markersize=4, label=f"ClustViT, merge_bias {bias:+g}")
        if bias == 0:
            for r in pts:  # budget 1 below its point: it often sits next to 0.75
                ax.annotate(f"{r.merge_budget:g}", (r.gflops_mean, 100 * r.miou), fontsize=7,
                            textcoords="offset points", ha="center",
                            xytext=(0, -16 if r.merge_budget == 1 else 6))
    for r in results:
        if r.merge_budget == 1 and r.merge_bias == 0:
            ax.plot([r.gflops_mean], [100 * r.miou], marker="o", markersize=13, fillstyle="none",
                    color="black", linestyle="none", label="default: budget 1, bias 0")
    if baseline:
        ax.plot([baseline.gflops_mean], [100 * baseline.miou], marker="*", markersize=14,
                linestyle="none", color="black", label="ViT (dense baseline)")
        ax.axhline(100 * baseline.miou - 1, color="gray", linestyle=":", linewidth=1)
        ax.axvline(baseline.gflops_mean / 2, color="gray", linestyle=":", linewidth=1)
        ax.annotate("baseline − 1 mIoU, baseline GFLOPs / 2", (baseline.gflops_mean / 2,
                    100 * baseline.miou - 1), textcoords="offset points", xytext=(4, 4),
                    fontsize=7, color="gray")
    ax.set_xlabel("GFLOPs per frame (mean over images; labels: merge_budget)")
    ax.set_ylabel("mIoU (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """``clustvit sweep``: evaluate a checkpoint over merge_budget x merge_bias, write a markdown
    table and a PNG of mIoU against GFLOPs (with ``--baseline``, the dense ViT as a point)."""
    parser = subparsers.add_parser("sweep", help="mIoU / GFLOPs / latency over a budget grid",
                                   description=add_parser.__doc__)
    parser.add_argument("--checkpoint", required=True, help="the ClustViT checkpoint")
    parser.add_argument("--baseline", help="a dense ViT checkpoint (k=0) evaluated once")
    parser.add_argument("--budgets", type=_floats, default=[0.0, 0.25, 0.5, 0.75, 1.0],
                        help="comma-separated merge_budget values (default 0,0.25,0.5,0.75,1)")
    parser.add_argument("--biases", type=_floats, default=[0.0],
                        help="comma-separated merge_bias values (default 0)")
    parser.add_argument("--out", default="runs/sweep", help="folder for the outputs")
    parser.add_argument("--table", help="markdown table path (default OUT/sweep.md)")
    parser.add_argument("--plot", help="PNG path (default OUT/sweep.png)")
    parser.add_argument("--title", default="", help="plot title")
    add_dataset_arguments(parser)
    parser.set_defaults(func=_run)


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers: {text!r}") from None


def _run(args: argparse.Namespace) -> int:
    grid = budget_grid(args.budgets, args.biases)  # validates the values before any loading
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = data_config_from_args(args, read_metadata(args.checkpoint)[0].img_size)
    engine = open_engine(args.checkpoint, args, data)
    dataset = val_dataset(data, progress=True)
    baseline = None
    if args.baseline:
        base_seg = open_engine(args.baseline, args, data)
        baseline = evaluate(base_seg, dataset, MergeBudget(), args.warmup, progress=True)
        print("baseline:", baseline.summary().splitlines()[0])
    results = sweep(engine, dataset, grid, args.warmup, progress=True)
    table = markdown_table(results, baseline)
    if len(results[0].iou) <= MAX_CLASS_COLUMNS:
        table += "\nPer-class IoU (%):\n\n" + per_class_table(results, baseline)
    table_path = Path(args.table) if args.table else out / "sweep.md"
    plot_path = Path(args.plot) if args.plot else out / "sweep.png"
    table_path.write_text(table)
    plot(results, plot_path, baseline, args.title)
    (out / "sweep.json").write_text(json.dumps(
        {"device": str(engine.device), "dtype": args.dtype, "threads": torch.get_num_threads(),
         "torch": torch.__version__, "baseline": asdict(baseline) if baseline else None,
         "results": [asdict(r) for r in results]}, indent=2) + "\n")
    print(table, end="")
    print(f"wrote {table_path}, {plot_path}, {out / 'sweep.json'}")
    return 0
