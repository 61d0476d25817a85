"""Two checkpoints side by side on the same frames: end-to-end latency through the runtime engine.

Every iteration runs each model once on the next frame, alternating which goes first, so a load
drift on a shared machine hits both alike. Reported per model: the whole ``Engine.run`` (what the
node pays per frame) p50/p95, the model alone p50, GFLOPs per frame, and the ratio of each to the
first checkpoint. For a retrained default model: is it as fast as the one it replaces?

    .venv/bin/python benchmarks/compare_models.py OLD.safetensors NEW.safetensors \\
        --frames ../shared/datasets/camvid --split train:0006R0 --iters 200
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from clustvit_ros.data.formats import CamVid  # noqa: E402
from clustvit_ros.model import MergeBudget  # noqa: E402
from clustvit_ros.runtime.engine import Engine  # noqa: E402
from clustvit_ros.runtime.percentile import percentile  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs=2, help="reference first, then the candidate")
    ap.add_argument("--frames", required=True, help="CamVid root (SegNet layout)")
    ap.add_argument("--split", default="val", help="CamVid split expression (default val)")
    ap.add_argument("--iters", type=int, default=200, help="timed frames per model")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--budget", type=float, default=1.0)
    ap.add_argument("--bias", type=float, default=0.0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    frames = CamVid(args.frames, args.split)
    images = [frames.load(i)[0] for i in range(len(frames))]
    engines = [Engine(c, device="cpu") for c in args.checkpoints]
    budget = MergeBudget(args.budget, args.bias)
    total = {i: [] for i in range(2)}
    model = {i: [] for i in range(2)}
    gflops = {i: [] for i in range(2)}
    for it in range(args.warmup + args.iters):
        image = images[it % len(images)]
        for i in ((0, 1) if it % 2 == 0 else (1, 0)):
            start = time.perf_counter()
            result = engines[i].run(image, budget)
            elapsed = (time.perf_counter() - start) * 1e3
            if it >= args.warmup:
                total[i].append(elapsed)
                model[i].append(result.inference_ms)
                gflops[i].append(result.gflops)
    print(f"{len(images)} frames of CamVid {args.split}, {args.iters} runs each, interleaved; "
          f"budget {args.budget:g}, bias {args.bias:+g}; torch threads {torch.get_num_threads()}")
    print("| model | end to end p50 / p95 (ms) | model p50 (ms) | GFLOPs | p50 ÷ reference |")
    print("|---|---|---|---|---|")
    ref = percentile(total[0], 50)
    for i, path in enumerate(args.checkpoints):
        p50, p95 = percentile(total[i], 50), percentile(total[i], 95)
        print(f"| {Path(path).name} | {p50:.1f} / {p95:.1f} | {percentile(model[i], 50):.1f} | "
              f"{np.mean(gflops[i]):.3f} | {p50 / ref:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
