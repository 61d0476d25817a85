"""Evaluation through the runtime engine: mIoU, per-class IoU, GFLOPs, latency and token statistics.

Every image goes through :meth:`~clustvit_ros.runtime.engine.Engine.run` at batch size 1 (what
the robot runs): the engine resizes it to the model input, segments it with the given budget and
returns labels at the image's own resolution, where the IoU is taken (mmseg's protocol). Latency is
the engine's preprocess + inference + postprocess time of each frame after ``warmup`` untimed
frames; GFLOPs are the analytic count of the tokens each frame actually used.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..data import DATASETS
from ..model.budget import MergeBudget
from ..model.checkpoints import read_metadata
from ..runtime.engine import Engine
from ..runtime.options import DESCRIPTIONS, DTYPE_NAMES, RESIZE_POLICIES, EngineOptions
from ..runtime.percentile import percentile
from .config import DataConfig, load_config
from .data import val_dataset
from .metrics import ConfusionMatrix


@dataclass
class EvalResult:
    """One evaluation of one model at one merge budget."""

    merge_budget: float
    merge_bias: float
    images: int
    miou: float
    iou: dict[str, float]
    gflops_mean: float
    gflops_std: float
    dense_gflops: float
    latency_p50_ms: float
    latency_p95_ms: float
    kept_mean: float
    merged_mean: float
    dense_frames: float

    def summary(self) -> str:
        lines = [f"budget {self.merge_budget:g} bias {self.merge_bias:+g} on {self.images} images: "
                 f"mIoU {100 * self.miou:.2f}",
                 f"GFLOPs {self.gflops_mean:.3f} ± {self.gflops_std:.3f} (dense path "
                 f"{self.dense_gflops:.3f}, {self.dense_gflops / self.gflops_mean:.2f}x)",
                 f"latency p50 {self.latency_p50_ms:.1f} ms, p95 {self.latency_p95_ms:.1f} ms",
                 f"tokens kept {self.kept_mean:.1f}, merged {self.merged_mean:.1f} per frame "
                 f"({100 * self.dense_frames:.0f}% of frames dense)",
                 "per-class IoU:"]
        lines += [f"  {name:<16} {'  n/a' if math.isnan(v) else f'{100 * v:5.1f}'}"
                  for name, v in self.iou.items()]
        return "\n".join(lines)


def evaluate(engine: Engine, dataset, budget: MergeBudget = MergeBudget(),
             warmup: int = 3, progress: bool = False) -> EvalResult:
    """Run every image of ``dataset`` (its raw ``load(i)`` pairs) through ``engine``."""
    config = engine.config
    if dataset.num_classes != config.num_classes:
        raise ValueError(f"dataset has {dataset.num_classes} classes, the model "
                         f"{config.num_classes}")
    if len(dataset) == 0:
        raise ValueError("the evaluation dataset is empty")
    for _ in range(warmup):
        engine.run(dataset.load(0)[0], budget)
    matrix = ConfusionMatrix(config.num_classes, dataset.ignore_index)
    gflops, latency, kept, merged = [], [], [], []
    dense_gf = dense_frames = 0.0
    indices = range(len(dataset))
    if progress:
        from tqdm import tqdm
        indices = tqdm(indices, desc=f"eval budget {budget.merge_budget:g} "
                                     f"bias {budget.merge_bias:+g}", unit="img", leave=False)
    for i in indices:
        rgb, mask = dataset.load(i)
        r = engine.run(rgb, budget)
        matrix.update(torch.from_numpy(r.labels), torch.from_numpy(mask.astype(np.int64)))
        gflops.append(r.gflops)
        dense_gf += r.dense_gflops
        latency.append(r.preprocess_ms + r.inference_ms + r.postprocess_ms)
        kept.append(r.stats.kept_tokens[0])
        merged.append(r.stats.merged_tokens[0])
        dense_frames += r.stats.dense[0]
    n = len(gflops)
    return EvalResult(
        merge_budget=budget.merge_budget, merge_bias=budget.merge_bias, images=n,
        miou=matrix.miou(), iou=dict(zip(engine.classes.names, matrix.iou())),
        gflops_mean=statistics.fmean(gflops), gflops_std=statistics.pstdev(gflops),
        dense_gflops=dense_gf / n, latency_p50_ms=percentile(latency, 50),
        latency_p95_ms=percentile(latency, 95), kept_mean=statistics.fmean(kept),
        merged_mean=statistics.fmean(merged), dense_frames=dense_frames / n)


# -- command line (shared with sweep) -----------------------------------------------------------

def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """Evaluation data and engine options of ``clustvit eval`` and ``clustvit sweep``."""
    data = parser.add_argument_group("data (default: the synthetic val split at the model size)")
    data.add_argument("--config", help="take the data section of this training recipe")
    data.add_argument("--dataset", choices=DATASETS)
    data.add_argument("--root", help="dataset root folder (all but synthetic)")
    data.add_argument("--split", help="split to evaluate (default val)")
    data.add_argument("--length", type=int, metavar="N",
                      help="images: synthetic scenes to render, or the first N of a real split")
    data.add_argument("--seed", type=int, help="synthetic scene seed")
    engine = parser.add_argument_group("engine")
    engine.add_argument("--device", default="auto", help=DESCRIPTIONS["device"])
    engine.add_argument("--dtype", default="fp32", choices=DTYPE_NAMES, help=DESCRIPTIONS["dtype"])
    engine.add_argument("--resize", choices=RESIZE_POLICIES,
                        help=DESCRIPTIONS["resize"] + " Default: the recipe's data.eval_resize, else fixed.")
    engine.add_argument("--warmup", type=int, default=5, help="untimed frames before timing")
    engine.add_argument("--threads", type=int, help="torch CPU threads")


def data_config_from_args(args: argparse.Namespace, model_size: tuple[int, int]) -> DataConfig:
    cfg = load_config(args.config).data if args.config else DataConfig(size=model_size)
    if args.dataset:
        cfg.dataset = args.dataset
    for name, attr in (("root", "root"), ("split", "val_split"), ("length", "val_length"),
                       ("seed", "seed")):
        if getattr(args, name) is not None:
            setattr(cfg, attr, getattr(args, name))
    if cfg.dataset != "synthetic" and not cfg.root:
        raise ValueError(f"--root is needed for dataset {cfg.dataset!r}")
    return cfg


def open_engine(checkpoint: str, args: argparse.Namespace, data: DataConfig) -> Engine:
    if args.threads:
        torch.set_num_threads(args.threads)
    engine = Engine.from_options(EngineOptions(checkpoint, device=args.device, dtype=args.dtype,
                                            resize=args.resize or data.eval_resize))
    for warning in engine.warnings:
        print(f"warning: {warning}")
    return engine


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """``clustvit eval``: mIoU, per-class IoU, GFLOPs, latency and token statistics of a
    checkpoint at one merge budget."""
    parser = subparsers.add_parser("eval", help="evaluate a checkpoint at one merge budget",
                                   description=add_parser.__doc__)
    parser.add_argument("--checkpoint", required=True, help="a clustvit_ros .safetensors file")
    parser.add_argument("--budget", type=float, default=1.0, help="merge_budget in [0, 1]")
    parser.add_argument("--bias", type=float, default=0.0, help="merge_bias (positive merges more)")
    parser.add_argument("--json", metavar="PATH", help="also write the result as JSON")
    add_dataset_arguments(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    budget = MergeBudget(args.budget, args.bias)
    data = data_config_from_args(args, read_metadata(args.checkpoint)[0].img_size)
    engine = open_engine(args.checkpoint, args, data)
    dataset = val_dataset(data, progress=True)
    result = evaluate(engine, dataset, budget, args.warmup, progress=True)
    print(f"{args.checkpoint} on {engine.device} ({args.dtype}, {torch.get_num_threads()} threads)")
    print(result.summary())
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(result), indent=2) + "\n")
    return 0
