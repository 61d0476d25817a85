"""Dense ViT vs ClustViT latency on this CPU, batch 1, measured side by side (interleaved).

The same randomly initialised model runs the dense path (merge budget 0: the plain ViT + head)
and the ClustViT path with a budget cap that merges a fixed share of the tokens at block ``ip``.
Prints a markdown table: GFLOPs (analytic, exact), latency p50/p95 of the model (encoder + head,
what the GFLOPs count) and of the whole forward (plus the bilinear upsampling of the logits),
speed-up, GFLOPs ratio and conversion efficiency = speed-up / GFLOPs ratio.

    .venv/bin/python benchmarks/bench_model.py --iters 20
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, no install

from clustvit_ros.model import (  # noqa: E402
    ClustViT, ClustViTConfig, MergeBudget, dense_gflops,
    frame_gflops)


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="small")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--classes", type=int, default=150)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--ip", type=int, default=3)
    parser.add_argument("--budget", type=float, default=0.5,
                        help="merge cap; random weights merge ~3/4 of the tokens uncapped")
    parser.add_argument("--bias", type=float, default=0.0)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    cfg = ClustViTConfig.from_variant(args.variant, num_classes=args.classes, k=args.k, ip=args.ip)
    model = ClustViT(cfg).eval()
    x = torch.randn(1, 3, args.size, args.size)
    budgets = {"dense ViT (budget 0)": MergeBudget(0.0),
               f"ClustViT (budget {args.budget:g}, bias {args.bias:g})":
                   MergeBudget(args.budget, args.bias)}

    def model_only(budget: MergeBudget):
        feats = model.forward_features(x, budget)
        model.forward_head(feats.tokens, feats.grid)
        return feats

    scopes = {"model": model_only, "end-to-end": lambda b: model(x, b)}
    times: dict[tuple[str, str], list[float]] = {(n, s): [] for s in scopes for n in budgets}
    stats = {}
    with torch.inference_mode():
        for i in range(args.warmup + args.iters):
            for (name, scope), samples in times.items():  # interleaved: load hits all alike
                t0 = time.perf_counter()
                out = scopes[scope](budgets[name])
                elapsed = time.perf_counter() - t0
                if i >= args.warmup:
                    samples.append(elapsed * 1e3)
                stats[name] = out.stats

    hw = (args.size, args.size)
    dense_gf = dense_gflops(cfg, hw)
    print(f"ViT-{args.variant} + mask head, {args.size}x{args.size}, {args.classes} classes, "
          f"k={args.k}, ip={args.ip}, batch 1, CPU ({torch.get_num_threads()} threads), "
          f"torch {torch.__version__}, {args.iters} timed iterations each. 'model' = encoder + "
          f"head (what the GFLOPs count); 'end-to-end' adds the bilinear upsampling of the "
          f"logits to {args.size}x{args.size}.\n")
    print("| scope | path | kept / patch tokens | GFLOPs | p50 ms | p95 ms | speed-up "
          "| GFLOPs ratio | efficiency |")
    print("|---|---|---|---|---|---|---|---|---|")
    for scope in scopes:
        dense_p50 = statistics.median(times[next(iter(budgets)), scope])
        for name in budgets:
            s, samples = stats[name], times[name, scope]
            gf = frame_gflops(cfg, s, hw)
            p50, p95 = statistics.median(samples), percentile(samples, 95)
            speedup, ratio = dense_p50 / p50, dense_gf / gf
            print(f"| {scope} | {name} | {s.kept_tokens[0]} / {s.patch_tokens} | {gf:.2f} | "
                  f"{p50:.1f} | {p95:.1f} | {speedup:.2f}x | {ratio:.2f}x | "
                  f"{speedup / ratio:.2f} |")


if __name__ == "__main__":
    main()
