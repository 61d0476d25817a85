"""GPU: dense ViT vs ClustViT end to end through the engine, fp32/fp16/bf16, with and without CUDA graphs.

`make bench-gpu` runs it on a machine with CUDA in under 5 minutes and writes its section of
docs/BENCHMARKS.md. ViT-T/S/B at 512 (random weights, 150 classes, as bench_model.py) and the
default model; per model and dtype two engines, plain (*eager*) and ``cuda_graphs=True`` (the blocks
as CUDA graphs per token-count bucket, runtime/block_graphs.py); the dense path and forced merges,
all interleaved; batch 1 on one synthetic scene (the default model: a CamVid frame). Times come
from CUDA events: *model* is the engine's own (`Result.inference_ms`), *e2e* brackets the whole
`Engine.run` (upload, model, label map, copy of the labels to the host). Checks: the labels of
fp16/bf16 agree with fp32's on >= 99 % of the pixels and CUDA graphs with eager on >= 99.9 %; the
GFLOPs of the dense path and the forced merges are identical across dtypes and modes (the model's
own decision may merge other tokens in fp16/bf16).

    .venv/bin/python benchmarks/bench_gpu.py --doc docs/BENCHMARKS.md     # what make bench-gpu runs
    .venv/bin/python benchmarks/bench_gpu.py --device cpu --variants tiny --size 64 --iters 2 \\
        --warmup 1 --dtypes fp32 bf16 --no-default                         # CPU smoke run of the script

On the CPU (the smoke run) there are no CUDA events or graphs: the two modes run the same code.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import report  # noqa: E402
from bench_model import default_model, model_checkpoints, scene, settings_for  # noqa: E402
from variants import LABELS  # noqa: E402
from clustvit_ros.model import MergeBudget  # noqa: E402
from clustvit_ros.model.configs import HEADS  # noqa: E402
from clustvit_ros.runtime.options import DTYPE_NAMES  # noqa: E402
from clustvit_ros.runtime.engine import Engine, Result  # noqa: E402

SECTION = "gpu"
MODES = ("eager", "graphs")
AGREE_DTYPE, AGREE_GRAPHS = 0.99, 0.999
PAPER_VIT_T = 0.95  # the ClustViT paper's ViT-T speed-up over dense on its GPU


@dataclass
class Cell:
    """One (dtype, mode, setting): timings, GFLOPs and the labels of its last frame."""

    model_ms: list[float] = field(default_factory=list)
    e2e_ms: list[float] = field(default_factory=list)
    gflops: float = float("nan")
    labels: np.ndarray | None = None


@dataclass
class ModelRun:
    name: str
    size: tuple[int, int]
    labels: list[str]                                # setting labels, dense first
    cells: dict[tuple[str, str, str], Cell]          # (dtype, mode, setting label)
    graphs: dict[str, int]                           # graphs captured per dtype


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu for a smoke run of the script")
    p.add_argument("--variants", nargs="*", default=["tiny", "small", "base"], choices=list(LABELS))
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--classes", type=int, default=150)
    p.add_argument("--head", default="mask", choices=HEADS)
    p.add_argument("--budgets", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    p.add_argument("--bias", type=float, default=100.0, help="merge_bias that makes every token merge")
    p.add_argument("--dtypes", nargs="+", default=list(DTYPE_NAMES), choices=DTYPE_NAMES)
    p.add_argument("--iters", type=int, default=50, help="timed frames per setting and mode (default 50)")
    p.add_argument("--warmup", type=int, default=10, help="untimed frames per setting and mode (graph "
                   "captures happen here; default 10)")
    p.add_argument("--default-model", type=Path, help="default: the packaged default model (camvid)")
    p.add_argument("--no-default", action="store_true", help="skip the default model")
    p.add_argument("--doc", type=Path, help="update this markdown file's gpu section")
    return p.parse_args(argv)


def timed_run(engine: Engine, rgb: np.ndarray, budget: MergeBudget) -> tuple[Result, float]:
    """One frame and its end-to-end ms: CUDA events around `Engine.run` on a GPU, else a perf counter."""
    if engine.device.type != "cuda":
        t0 = time.perf_counter()
        result = engine.run(rgb, budget)
        return result, (time.perf_counter() - t0) * 1e3
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    result = engine.run(rgb, budget)  # ends with the labels on the host
    end.record()
    end.synchronize()
    return result, start.elapsed_time(end)


def run_model(name: str, checkpoint: Path, size: tuple[int, int], trained: bool, args) -> ModelRun:
    rgb = scene(size, "camvid" if trained else "synthetic")  # the default model: its own road scenes
    settings = settings_for(args.budgets, args.bias, trained)
    run = ModelRun(name, size, [s.label for s in settings], {}, {})
    for dtype in args.dtypes:
        engines = {mode: Engine(checkpoint, device=args.device, dtype=dtype, input_size=size,
                                cuda_graphs=mode == "graphs") for mode in MODES}
        jobs = [(mode, s) for mode in MODES for s in settings]
        t0 = time.monotonic()
        for i in range(args.warmup + args.iters):
            for mode, s in jobs[i % len(jobs):] + jobs[:i % len(jobs)]:
                result, e2e = timed_run(engines[mode], rgb, s.budget)
                cell = run.cells.setdefault((dtype, mode, s.label), Cell())
                cell.gflops, cell.labels = result.gflops, result.labels
                if i >= args.warmup:
                    cell.model_ms.append(result.inference_ms)
                    cell.e2e_ms.append(e2e)
        blocks = engines["graphs"].blocks
        run.graphs[dtype] = blocks.graphs if blocks is not None else 0
        print(f"  {name} {dtype}: {time.monotonic() - t0:.0f} s", file=sys.stderr)
        del engines
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return run


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a == b).mean())


HEADER = ["model", "dtype", "path", "GFLOPs", "GFLOPs ratio", "eager model / e2e p50 ms", "eager e2e speed-up",
          "eager e2e efficiency", "graphs model / e2e p50 ms", "graphs e2e speed-up", "graphs ÷ eager (e2e)",
          "labels = fp32 eager", "labels = eager"]


def rows_of(run: ModelRun, dtypes: list[str]) -> list[list[str]]:
    rows, reference = [], dtypes[0]
    for dtype in dtypes:
        dense = {mode: report.p50(run.cells[dtype, mode, run.labels[0]].e2e_ms) for mode in MODES}
        for label in run.labels:
            eager, graphs = (run.cells[dtype, mode, label] for mode in MODES)
            ratio = run.cells[dtype, "eager", run.labels[0]].gflops / eager.gflops
            su = {mode: dense[mode] / report.p50(c.e2e_ms) for mode, c in zip(MODES, (eager, graphs))}
            rows.append([f"{run.name} {run.size[0]}×{run.size[1]}", dtype, label, f"{eager.gflops:.2f}",
                         f"{ratio:.2f}×",
                         f"{report.fmt(report.p50(eager.model_ms))} / {report.fmt(report.p50(eager.e2e_ms))}",
                         f"{su['eager']:.2f}×", f"{su['eager'] / ratio:.2f}",
                         f"{report.fmt(report.p50(graphs.model_ms))} / {report.fmt(report.p50(graphs.e2e_ms))}",
                         f"{su['graphs']:.2f}×", f"{report.p50(eager.e2e_ms) / report.p50(graphs.e2e_ms):.2f}×",
                         f"{agreement(eager.labels, run.cells[reference, 'eager', label].labels):.2%}",
                         f"{agreement(graphs.labels, eager.labels):.2%}"])
    return rows


def targets(runs: list[ModelRun], dtypes: list[str]) -> list[list[str]]:
    """Verdict rows: ClustViT not slower than dense, labels agree, GFLOPs identical, graphs' win."""
    out = []
    for run in runs:
        name = f"{run.name} {run.size[0]}×{run.size[1]}"
        forced = [label for label in run.labels[1:] if "own decision" not in label]
        for dtype in dtypes:
            for mode in MODES:
                dense = report.p50(run.cells[dtype, mode, run.labels[0]].e2e_ms)
                worst = min(dense / report.p50(run.cells[dtype, mode, label].e2e_ms) for label in forced)
                out.append([name, f"ClustViT not slower than dense, {dtype} {mode} (paper ViT-T: "
                            f"{PAPER_VIT_T}×)", f"slowest forced merge {worst:.2f}×", report.verdict(worst >= 1.0)])
        for dtype in dtypes[1:]:
            low = min(agreement(run.cells[dtype, "eager", label].labels, run.cells[dtypes[0], "eager", label].labels)
                      for label in run.labels)
            out.append([name, f"{dtype} labels = {dtypes[0]} labels on ≥ {AGREE_DTYPE:.0%} of pixels",
                        f"lowest {low:.2%}", report.verdict(low >= AGREE_DTYPE)])
        low = min(agreement(run.cells[key].labels, run.cells[key[0], "eager", key[2]].labels)
                  for key in run.cells if key[1] == "graphs")
        out.append([name, f"graphs labels = eager labels on ≥ {AGREE_GRAPHS:.1%} of pixels", f"lowest {low:.2%}",
                    report.verdict(low >= AGREE_GRAPHS)])
        same = all(len({run.cells[d, m, label].gflops for d in dtypes for m in MODES}) == 1
                   for label in [run.labels[0], *forced])
        out.append([name, "GFLOPs identical across dtypes and modes (dense, forced merges)",
                    "identical" if same else "differ", report.verdict(same)])
    return out


def graphs_verdict(runs: list[ModelRun], dtypes: list[str]) -> str:
    ratios = [report.p50(run.cells[d, "eager", label].e2e_ms) / report.p50(run.cells[d, "graphs", label].e2e_ms)
              for run in runs for d in dtypes for label in run.labels]
    wins = sum(r > 1.0 for r in ratios)
    decision = ("wins in every row: make it the default (`cuda_graphs: true`)" if wins == len(ratios) else
                "does not win in every row: keep the default off")
    return (f"CUDA graphs (token-count buckets) against eager, end to end: faster in {wins} of {len(ratios)} rows, "
            f"median {float(np.median(ratios)):.2f}×, range {min(ratios):.2f}–{max(ratios):.2f}×. It {decision}.")


def section(runs: list[ModelRun], args, machine: str, seconds: float, missing: str | None) -> str:
    smoke = "" if args.device.startswith("cuda") else (
        " **CPU smoke run of the script: no CUDA events or graphs, the two modes run the same code; "
        "these figures say nothing about a GPU.**")
    out = ["## GPU: dense ViT vs ClustViT, fp32/fp16/bf16, CUDA graphs (`benchmarks/bench_gpu.py`)", "",
           f"Measured {report.stamp()} with `{report.command_line()}` in {seconds:.0f} s.{smoke} Path: the "
           "runtime engine, batch 1, one synthetic scene (the default model: the demo camera's first "
           "CamVid frame); ViT-T/S/B random weights, "
           f"{args.classes} classes, {args.head} head, k=3, ip=3, merging forced with merge_bias {args.bias:g}; "
           "the default model also runs its own decision. Per model and dtype an *eager* engine and a "
           "`cuda_graphs` one (blocks replayed as CUDA graphs per token-count bucket), every setting of both "
           f"interleaved, {args.warmup} warm-up (graph captures) + {args.iters} timed frames each. *model* = "
           "`Result.inference_ms` (CUDA events), *e2e* = CUDA events around the whole `Engine.run`. "
           "Efficiency = speed-up ÷ GFLOPs ratio.", "", machine, ""]
    if missing:
        out += [f"Default model: **missing** ({missing}).", ""]
    out += [report.table(HEADER, [r for run in runs for r in rows_of(run, args.dtypes)]), "",
            "Graphs captured per model and dtype: " + ", ".join(
                f"{run.name} {d} {run.graphs[d]}" for run in runs for d in args.dtypes) + ".", "",
            "### Targets", "",
            report.table(["model", "target", "measured", "result"], targets(runs, args.dtypes)), "",
            graphs_verdict(runs, args.dtypes), ""]
    return "\n".join(out)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench_gpu: no CUDA device (torch " + torch.__version__ + "); on a GPU machine install a CUDA "
              "build of torch (README, GPU). `--device cpu` runs the script's smoke mode.", file=sys.stderr)
        return 2
    default, missing = default_model(args)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        runs = [run_model(name, path, size, trained, args)
                for name, path, size, trained in model_checkpoints(args, default, Path(tmp))]
    machine = report.machine(args.device, "/".join(args.dtypes))
    body = report.warn_if_busy(section(runs, args, machine, time.monotonic() - t0, missing))
    report.publish(SECTION, body, args.doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
