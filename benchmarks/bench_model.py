"""Model level: dense ViT vs ClustViT, side by side, batch 1, through the runtime engine.

Every frame goes through ``runtime.engine.Engine.run`` -- what the node runs on the robot -- on
one frame per model: a synthetic robot scene for the random-weight ViT variants, the demo camera's
first CamVid frame for the default model (road scenes are what it was trained on). Each model runs
the dense path (merge budget 0: the plain ViT + head, the Cluster module skipped) and ClustViT with
a merge count forced by a large ``merge_bias`` (every token wants to merge) and capped by the
budget: budget b merges exactly floor(b * P) of the P patch tokens at block ``ip``. The trained
default model also runs its own decision (budget 1, bias 0). Settings are interleaved -- every
iteration runs each setting once, in a rotating order -- so a load drift hits all of them alike.

Reported per setting: analytic GFLOPs; latency p50/p95 of the model (encoder + head,
``Result.inference_ms``: what the GFLOPs count) and end to end (the whole ``run``: preprocessing,
model, bilinear upsampling + argmax to the image size and the copy to the host, what the node
pays); speed-up = dense p50 / ClustViT p50; GFLOPs ratio = dense / ClustViT GFLOPs; conversion
efficiency = speed-up / GFLOPs ratio (1.0: every saved FLOP saves its share of time). A second
table times the label-map step (upsample + argmax) with every class against block by block, on
each setting's logits, interleaved (label_map_timing.py).

    .venv/bin/python benchmarks/bench_model.py                       # ViT-T/S/B 512 + default model
    .venv/bin/python benchmarks/bench_model.py --variants tiny --size 128 --iters 2 --no-default
    .venv/bin/python benchmarks/bench_model.py --doc docs/BENCHMARKS.md   # also update the doc

The CPU only; the GPU's table is `make bench-gpu` (bench_gpu.py).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import label_map_timing  # noqa: E402
import report  # noqa: E402
from variants import LABELS, variant_checkpoint  # noqa: E402
from clustvit_ros.data.synthetic import render_scene  # noqa: E402
from clustvit_ros.model import MergeBudget  # noqa: E402
from clustvit_ros.model.checkpoints import read_metadata  # noqa: E402
from clustvit_ros.model.configs import HEADS  # noqa: E402
from clustvit_ros.runtime.engine import Engine  # noqa: E402
from clustvit_ros.runtime.packaged import SAMPLE_FRAMES, default_checkpoint, share_path  # noqa: E402

SECTION = "model"
TARGET_EFFICIENCY = 0.9
TARGET_E2E_EFFICIENCY = 0.85  # end to end, every row
SCENES = {"camvid": "the demo camera's first CamVid frame (the road scenes it was trained on)",
          "synthetic": "the same synthetic scene"}


@dataclass
class Setting:
    label: str
    budget: MergeBudget
    e2e_ms: list[float] = field(default_factory=list)
    model_ms: list[float] = field(default_factory=list)
    pre_ms: list[float] = field(default_factory=list)
    post_ms: list[float] = field(default_factory=list)
    gflops: float = float("nan")
    kept: int = 0
    patches: int = 0


@dataclass
class ModelRun:
    name: str
    size: tuple[int, int]
    device: str
    dtype: str
    machine: str
    settings: list[Setting]
    trained: bool
    label_map: list[label_map_timing.LabelMapTiming]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", nargs="*", default=["tiny", "small", "base"], choices=list(LABELS))
    p.add_argument("--size", type=int, default=512, help="input side of the variants (default 512)")
    p.add_argument("--classes", type=int, default=150, help="classes of the variants (ADE20K: 150)")
    p.add_argument("--head", default="mask", choices=HEADS)
    p.add_argument("--budgets", type=float, nargs="+", default=[0.25, 0.5, 0.75],
                   help="forced merge shares (default 0.25 0.5 0.75)")
    p.add_argument("--bias", type=float, default=100.0, help="merge_bias that makes every token merge")
    p.add_argument("--iters", type=int, default=20, help="timed iterations per setting (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed iterations per setting (default 3)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    p.add_argument("--cpu-dtypes", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    p.add_argument("--default-model", type=Path, help="default: the packaged default model (camvid)")
    p.add_argument("--no-default", action="store_true", help="skip the default model")
    p.add_argument("--default-scene", default="camvid", choices=("camvid", "synthetic"),
                   help="the default model's frame (default camvid: the road scenes it was trained on)")
    p.add_argument("--doc", type=Path, help="update this markdown file's model section (+ PNG beside it)")
    return p.parse_args(argv)


def scene(size: tuple[int, int], kind: str = "synthetic") -> np.ndarray:
    """One synthetic robot scene, or the demo camera's first CamVid frame (``camvid``), at `size`."""
    if kind == "camvid":
        first = sorted(share_path(SAMPLE_FRAMES).glob("*.jpg"))[0]
        rgb = cv2.cvtColor(cv2.imread(str(first), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        return cv2.resize(rgb, size[::-1], interpolation=cv2.INTER_AREA)
    rgb, _ = render_scene(np.random.default_rng(0), size)
    return np.ascontiguousarray(rgb)


def measure(engine: Engine, rgb: np.ndarray, settings: list[Setting], warmup: int, iters: int) -> None:
    """Run every setting warmup + iters times, interleaved in a rotating order."""
    n = len(settings)
    for i in range(warmup + iters):
        for s in settings[i % n:] + settings[:i % n]:
            t0 = time.perf_counter()
            r = engine.run(rgb, s.budget)
            wall = (time.perf_counter() - t0) * 1e3
            if i < warmup:
                continue
            s.e2e_ms.append(wall)
            s.model_ms.append(r.inference_ms)
            s.pre_ms.append(r.preprocess_ms)
            s.post_ms.append(r.postprocess_ms)
            s.gflops, s.kept, s.patches = r.gflops, r.stats.kept_tokens[0], r.stats.patch_tokens


def model_checkpoints(args, default: Path | None, tmp: Path) -> list[tuple[str, Path, tuple[int, int], bool]]:
    """(name, checkpoint, input size, trained) of the random-weight variants (saved into `tmp`) and
    of the default model, when given."""
    out = []
    for variant in args.variants:
        path = variant_checkpoint(variant, tmp / f"{variant}.safetensors", args.classes, args.head, args.size)
        out.append((LABELS[variant], path, (args.size, args.size), False))
    if default:
        cfg, _ = read_metadata(default)
        out.append((f"default model ({cfg.embed_dim}d × {cfg.depth}, {cfg.num_classes} classes)",
                    Path(default), tuple(cfg.img_size), True))
    return out


def default_model(args) -> tuple[Path | None, str | None]:
    """The default model to run (--default-model, else the packaged one), or None and why not."""
    if args.no_default:
        return None, None
    default = Path(args.default_model or default_checkpoint(Path(sys.prefix) / "share" / "clustvit_ros"))
    if not default.is_file():
        print(f"note: default model `{default}` does not exist yet", file=sys.stderr)
        return None, f"`{default}` does not exist yet"
    return default, None


def settings_for(budgets: list[float], bias: float, trained: bool) -> list[Setting]:
    out = [Setting("dense ViT (budget 0)", MergeBudget(0.0))]
    if trained:
        out.append(Setting("ClustViT, own decision (budget 1)", MergeBudget(1.0)))
    out += [Setting(f"ClustViT, {b:.0%} merged", MergeBudget(b, bias)) for b in budgets]
    return out


def run_model(name: str, checkpoint: Path, size: tuple[int, int], device: str, dtype: str,
              args, trained: bool) -> ModelRun:
    engine = Engine(checkpoint, device=device, dtype=dtype, input_size=size, resize="fixed")
    for w in engine.warnings:
        print(f"warning: {w}", file=sys.stderr)
    rgb = scene(size, args.default_scene if trained else "synthetic")
    settings = settings_for(args.budgets, args.bias, trained)
    line = report.machine(str(engine.device), dtype)
    t0 = time.monotonic()
    measure(engine, rgb, settings, args.warmup, args.iters)
    label_map = label_map_timing.measure(engine, rgb, [(s.label, s.budget) for s in settings], args.iters)
    print(f"  {name} {size[0]}x{size[1]} {engine.device} {dtype}: {time.monotonic() - t0:.0f} s", file=sys.stderr)
    del engine
    return ModelRun(name, size, device, dtype, line, settings, trained, label_map)


def rows_of(run: ModelRun) -> list[list[str]]:
    dense = run.settings[0]
    d_model, d_e2e = report.p50(dense.model_ms), report.p50(dense.e2e_ms)
    rows = []
    for s in run.settings:
        ratio = dense.gflops / s.gflops
        su_m, su_e = d_model / report.p50(s.model_ms), d_e2e / report.p50(s.e2e_ms)
        rows.append([f"{run.name} {run.size[0]}×{run.size[1]}", s.label, f"{s.patches - s.kept} / {s.patches}",
                     f"{s.gflops:.2f}", f"{ratio:.2f}×",
                     f"{report.fmt(report.p50(s.model_ms))} / {report.fmt(report.p95(s.model_ms))}",
                     f"{su_m:.2f}×", f"**{su_m / ratio:.2f}**",
                     f"{report.fmt(report.p50(s.e2e_ms))} / {report.fmt(report.p95(s.e2e_ms))}",
                     f"{su_e:.2f}×", f"{su_e / ratio:.2f}",
                     f"{report.fmt(report.p50(s.pre_ms))} / {report.fmt(report.p50(s.post_ms))}"])
    return rows


HEADER = ["model", "path", "merged / patch tokens", "GFLOPs", "GFLOPs ratio", "model p50 / p95 ms",
          "model speed-up", "model efficiency", "end-to-end p50 / p95 ms", "e2e speed-up",
          "e2e efficiency", "pre / post p50 ms"]


def efficiencies(run: ModelRun, scope: str = "model") -> list[float]:
    """Conversion efficiency of each forced-merge setting, model scope or end to end ("e2e")."""
    dense = run.settings[0]
    key = (lambda s: s.model_ms) if scope == "model" else (lambda s: s.e2e_ms)
    return [(report.p50(key(dense)) / report.p50(key(s))) / (dense.gflops / s.gflops)
            for s in run.settings[1:] if "own decision" not in s.label]


def plot(runs: list[ModelRun], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), sharey=True)
    top = 1.0
    for ax, scope in zip(axes, ("model", "e2e")):
        for i, run in enumerate(runs):
            dense = run.settings[0]
            key = (lambda s: s.model_ms) if scope == "model" else (lambda s: s.e2e_ms)
            d = report.p50(key(dense))
            xs = [dense.gflops / s.gflops for s in run.settings]
            ys = [d / report.p50(key(s)) for s in run.settings]
            order = np.argsort(xs)
            label = f"{run.name} {run.size[0]}²" + ("" if run.dtype == "fp32" else f" {run.dtype}")
            ax.plot(np.array(xs)[order], np.array(ys)[order], "o-", color=f"C{i}", label=label)
            top = max(top, *xs, *ys)
        ax.set_title("model (encoder + head)" if scope == "model" else "end to end (engine run)")
        ax.set_xlabel("GFLOPs ratio dense / ClustViT")
        ax.grid(alpha=0.3)
    for ax in axes:
        line = np.linspace(1, top * 1.05, 10)
        ax.plot(line, line, ":", color="grey", label="efficiency 1.0")
        ax.plot(line, TARGET_EFFICIENCY * line, "--", color="grey", lw=0.8, label=f"efficiency {TARGET_EFFICIENCY}")
        ax.set_xlim(0.9, top * 1.05)
        ax.set_ylim(0.5, top * 1.05)
    axes[0].set_ylabel("speed-up (dense p50 / ClustViT p50)")
    axes[1].legend(fontsize=8, loc="upper left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def section(groups: dict[tuple[str, str], list[ModelRun]], pngs: dict[tuple[str, str], str],
            args, missing_default: str | None) -> str:
    out = ["## Model level: dense ViT vs ClustViT (`benchmarks/bench_model.py`)", "",
           f"Measured {report.stamp()} with `{report.command_line()}`. Path: the runtime engine "
           "(`Engine.run`, what the node runs), batch 1, one frame per model: a synthetic robot scene for "
           f"the ViT variants, {SCENES[args.default_scene]} for the default model. "
           f"ViT-T/S/B: random weights, {args.classes} classes, {args.head} head, k=3, ip=3; merging "
           f"is forced with merge_bias {args.bias:g} so the budget cap sets how many of the P patch "
           "tokens merge at block ip. The trained default model also runs its own decision. "
           f"Settings interleaved (rotating order), {args.warmup} warm-up + {args.iters} timed "
           "iterations each. *model* = encoder + head (`Result.inference_ms`, what the GFLOPs count); "
           "*end-to-end* = the whole `run` (preprocess, model, upsample + argmax to the image, copy "
           "to the host): what the node pays. Efficiency = speed-up ÷ GFLOPs ratio.", ""]
    if missing_default:
        out += [f"Default model: **missing** ({missing_default}); only the ViT variants ran.", ""]
    elif args.default_model:
        out += [f"Default model: `{args.default_model}`.", ""]
    for (device, dtype), runs in groups.items():
        out += [f"### CPU {dtype}", "", runs[0].machine, "",
                report.table(HEADER, [r for run in runs for r in rows_of(run)]), ""]
        if (device, dtype) in pngs:
            out += [f"![speed-up against GFLOPs ratio, {device} {dtype}]({pngs[device, dtype]})", ""]
    lm_rows = [r for runs in groups.values() for run in runs
               for r in label_map_timing.rows_of(f"{run.name} {run.size[0]}×{run.size[1]}", f"CPU {run.dtype}",
                                                 run.label_map)]
    if lm_rows:
        out += ["### Label map: every class vs block by block (the engine's `post` step on the CPU)", "",
                "The step after the model: bilinear upsample of the patch logits to the image + argmax. "
                "The engine decides it block by block of the pixels that mix the same patch cells, each "
                "block mixing only the classes that can win one of its pixels (`runtime/block_argmax.py`, "
                "exact; from 1 M class × pixel values on, and 512 per logit cell, forced here for every model). Every class = "
                "all classes upsampled with a running max, the reference. Each path's logits of the same "
                f"scene, both label maps interleaved, {args.iters} runs each, p50.", "",
                report.table(label_map_timing.HEADER, lm_rows), ""]
    target_rows = []
    for run in groups.get(("cpu", "fp32"), []):
        for scope, target in (("model", TARGET_EFFICIENCY), ("e2e", TARGET_E2E_EFFICIENCY)):
            eff = efficiencies(run, scope)
            target_rows.append([f"{run.name} {run.size[0]}×{run.size[1]}",
                                f"{'model' if scope == 'model' else 'end to end'} ≥ {target}",
                                ", ".join(f"{e:.2f}" for e in eff), f"{min(eff):.2f}",
                                report.verdict(min(eff) >= target)])
    if target_rows:
        out += ["### Targets: conversion efficiency on CPU, every forced budget", "",
                report.table(["model", "target", "efficiency per budget (" + ", ".join(
                    f"{b:.0%}" for b in args.budgets) + " merged)", "lowest", "result"], target_rows), ""]
    return "\n".join(out)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [("cpu", d) for d in args.cpu_dtypes]
    default, missing = default_model(args)

    groups: dict[tuple[str, str], list[ModelRun]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_model_") as tmp:
        checkpoints = model_checkpoints(args, default, Path(tmp))
        for device, dtype in devices:
            for name, path, size, trained in checkpoints:
                groups.setdefault((device, dtype), []).append(
                    run_model(name, path, size, device, dtype, args, trained))

    pngs = {}
    if args.doc:
        for (device, dtype), runs in groups.items():
            name = f"bench_model_{device}_{dtype}.png"
            plot(runs, args.doc.parent / name, f"ClustViT vs dense ViT, {device} {dtype}, batch 1")
            pngs[device, dtype] = name
    body = report.warn_if_busy(section(groups, pngs, args, missing))
    report.publish(SECTION, body, args.doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
