"""What holding a latency target costs in accuracy: mIoU on held-out CamVid frames at the merge
levels the controller chose under each load, next to the fixed default budget.

Reads the merge levels (merge_budget, merge_bias) that the *on* run of `bench_latency_target.py`
used in each load phase, with how many frames ran at each (its --levels file). Every held-out image
is segmented once at each of those levels and at the fixed default (merge_budget 1, merge_bias 0),
through the engine the node runs; a phase's mIoU is that of the levels' confusion matrices mixed in
the phase's proportions: what a stream of held-out frames scores when each runs at a level chosen
as often as the controller chose it. IoU as `clustvit eval` computes it (mmseg's protocol).

The held-out frames are a parameter (--split, --sequence): they must be frames the model did not
train on, e.g. the sequence a leave-one-sequence-out model left out.

    .venv/bin/python benchmarks/accuracy_latency_target.py --split val          # ~5 min on 2 cores
    .venv/bin/python benchmarks/accuracy_latency_target.py --sequence 0016E5 --length 8   # quick
    .venv/bin/python benchmarks/accuracy_latency_target.py --doc docs/BENCHMARKS.md
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import report  # noqa: E402

SECTION = "latency_target_accuracy"
LEVELS = REPO / "out" / "latency_target_levels.json"
CAMVID = REPO.parent / "shared" / "datasets" / "camvid"
DEFAULT = "1:0"  # the node's default merge_budget 1, merge_bias 0


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--levels", type=Path, default=LEVELS,
                   help=f"bench_latency_target.py's merge levels (default {LEVELS.relative_to(REPO)})")
    p.add_argument("--checkpoint", help="model (default: the one the levels were measured with, else the "
                   "packaged one)")
    p.add_argument("--root", type=Path, default=CAMVID, help="CamVid in the SegNet layout (default "
                   "../shared/datasets/camvid); missing: nothing is done (exit 0)")
    p.add_argument("--split", default="val", help="the list file of held-out frames, ROOT/SPLIT.txt (default val)")
    p.add_argument("--sequence", help="only the frames whose file name starts with this (e.g. 0016E5)")
    p.add_argument("--length", type=int, help="only the first N of those frames (a quick check)")
    p.add_argument("--device", default="cpu", help="engine device (default cpu)")
    p.add_argument("--doc", type=Path, help="update this markdown file's section")
    return p.parse_args(argv)


def held_out(args):
    """The held-out CamVid frames the arguments name."""
    from clustvit_ros.data import build_dataset

    dataset = build_dataset("camvid", args.root, args.split)
    if args.sequence:
        dataset.samples = [s for s in dataset.samples if s[0].name.startswith(args.sequence)]
    if args.length:
        dataset.samples = dataset.samples[:args.length]
    if not dataset.samples:
        raise SystemExit(f"error: no frame of {args.root}/{args.split}.txt starts with {args.sequence!r}")
    return dataset


def budget_of(key: str):
    from clustvit_ros.model.budget import MergeBudget

    budget, bias = key.split(":")
    return MergeBudget(float(budget), float(bias))


def measure(engine, dataset, keys: list[str]) -> tuple[dict, dict]:
    """Per level: its confusion matrix over `dataset` and its mean GFLOPs."""
    import numpy as np
    import torch
    from tqdm import tqdm

    from clustvit_ros.train.metrics import ConfusionMatrix

    budgets = {key: budget_of(key) for key in keys}
    matrices = {key: ConfusionMatrix(dataset.num_classes, dataset.ignore_index) for key in keys}
    gflops = {key: 0.0 for key in keys}
    for i in tqdm(range(len(dataset)), desc=f"{len(keys)} merge levels", unit="img", file=sys.stderr):
        rgb, mask = dataset.load(i)
        target = torch.from_numpy(mask.astype(np.int64))
        for key, budget in budgets.items():
            result = engine.run(rgb, budget)
            matrices[key].update(torch.from_numpy(result.labels), target)
            gflops[key] += result.gflops / len(dataset)
    return matrices, gflops


def mixed_miou(matrices: dict, shares: dict[str, float]) -> float:
    """mIoU of the levels' confusion matrices mixed in the given proportions."""
    from clustvit_ros.train.metrics import ConfusionMatrix

    first = next(iter(matrices.values()))
    mixture = ConfusionMatrix(first.num_classes, first.ignore_index)
    mixture.matrix = sum(matrices[key].matrix.double() * share for key, share in shares.items())
    return mixture.miou()


def describe(key: str) -> str:
    budget = budget_of(key)
    return f"{budget.merge_budget:g} / {budget.merge_bias:+g}"


def section(levels: dict, matrices: dict, gflops: dict, frames: str, checkpoint: str, miou_default: float) -> str:
    rows = [["fixed default (no target)", f"{describe(DEFAULT)} (all frames)", f"{100 * miou_default:.2f}", "–",
             f"{gflops[DEFAULT]:.2f}"]]
    for phase in levels["phases"]:
        counts = phase["levels"]
        total = sum(counts.values())
        if not total:
            rows.append([f"{phase['phase']}, target on", "no frames", "", "", ""])
            continue
        shares = {key: n / total for key, n in counts.items()}
        top = sorted(shares.items(), key=lambda item: -item[1])
        used = ", ".join(f"{describe(k)} {100 * s:.0f} %" for k, s in top[:4]) + (
            f", {len(top) - 4} more" if len(top) > 4 else "")
        miou = mixed_miou(matrices, shares)
        rows.append([f"{phase['phase']}, target on", used, f"{100 * miou:.2f}",
                     f"{100 * (miou - miou_default):+.2f}", f"{sum(gflops[k] * s for k, s in shares.items()):.2f}"])
    out = ["## What holding the target costs in accuracy (`benchmarks/accuracy_latency_target.py`)", "",
           f"Measured {report.stamp()} with `{report.command_line()}`.", "",
           f"Model `{checkpoint}`; held-out frames: {frames}. Merge levels: the on run of the section above "
           f"(target {levels['target_ms']:g} ms), as merge_budget / merge_bias with the share of that "
           "phase's frames; a phase's mIoU mixes the levels' confusion matrices in those shares. GFLOPs: "
           "mean per held-out frame at those levels.", "",
           report.table(["load phase", "merge levels used (share of frames)", "mIoU", "Δ vs default",
                         "GFLOPs"], rows), ""]
    return "\n".join(out)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.root.is_dir():
        print(f"accuracy_latency_target: skipped, no CamVid at {args.root} (--root)", file=sys.stderr)
        return 0
    if not args.levels.is_file():
        print(f"error: {args.levels} does not exist: run bench_latency_target.py first", file=sys.stderr)
        return 2
    import torch

    from clustvit_ros.runtime.engine import Engine
    from clustvit_ros.runtime.options import EngineOptions

    levels = json.loads(args.levels.read_text())
    engine = Engine.from_options(EngineOptions(args.checkpoint or levels.get("checkpoint") or "", device=args.device))
    dataset = held_out(args)
    keys = sorted({DEFAULT} | {key for phase in levels["phases"] for key in phase["levels"]})
    print(f"{len(dataset)} held-out frames x {len(keys)} merge levels on {engine.device} "
          f"({torch.get_num_threads()} threads)", file=sys.stderr)
    matrices, gflops = measure(engine, dataset, keys)
    frames = (f"CamVid `{args.split}` split" + (f", sequence {args.sequence}" if args.sequence else "")
              + f", {len(dataset)} frames" + (f" (the first {args.length})" if args.length else ""))
    body = section(levels, matrices, gflops, frames, engine.checkpoint.name, matrices[DEFAULT].miou())
    report.publish(SECTION, body, args.doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
