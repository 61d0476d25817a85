"""GPU: dense ViT vs ClustViT end to end through the engine, fp32/fp16/bf16, eager, padded and CUDA graphs.

`make bench-gpu` runs it on any machine with a CUDA build of torch and numpy, OpenCV, PyYAML,
safetensors and tqdm (matplotlib for the plot), straight from a checkout: no venv, nothing of the
package installed, no ROS, no network. Every result goes under ``--out``: ``bench_gpu.md`` (the
section of docs/BENCHMARKS.md: tables and targets), ``bench_gpu.log`` (environment, progress,
warnings), ``bench_gpu.json`` (every timing) and ``bench_gpu.png`` (end-to-end time against
GFLOPs); they are rewritten after each model, so a run cut short keeps what it measured. It prints
only a short summary (the targets missed and the CUDA-graph verdict).

    PYTHONPATH=. python3 benchmarks/bench_gpu.py --out out/bench-gpu        # what make bench-gpu runs
    PYTHONPATH=. python3 benchmarks/bench_gpu.py --device cpu --variants tiny --size 64 --iters 2 \\
        --warmup 1 --dtypes fp32 bf16 --default-input-size 96 128 --out /tmp/dry   # CPU dry run
    PYTHONPATH=. python3 benchmarks/bench_gpu.py --publish out/bench-gpu --doc docs/BENCHMARKS.md

ViT-T/S/B at 512 (random weights, 150 classes, as bench_model.py) and the default model (on the demo
camera's first CamVid frame). Per model and dtype three engines, all settings of all three
interleaved, batch 1: *eager* (the plain engine), *padded* (merged sequences padded to the graph
buckets and masked, run eagerly: the graphs' work without the graphs) and *graphs*
(``cuda_graphs=True``). padded ÷ eager is what padding and the key mask cost, graphs ÷ padded what
the graphs themselves save; graphs ÷ eager, their product, is what the ``cuda_graphs`` default is
decided on. Padded rows count the padded tokens' GFLOPs. *model* = `Result.inference_ms`, *e2e* =
CUDA events around the whole `Engine.run` (upload, model, label map, labels to the host).

Checks: graphs' labels equal padded eager's exactly (same kernels, same shapes); fp16/bf16 labels
equal fp32's on >= 99.9 % of the *decisive* pixels, those whose fp32 top-2 logit gap exceeds
:data:`DECISIVE_GAP` x the logits' standard deviation (random weights leave many near-ties), for the
trained default model in every setting and for the random-weight ViTs on the dense path (their
forced merges choose among near-equal margins, so another dtype merges other tokens); GFLOPs of the
dense path and forced merges identical across dtypes and modes; on a GPU, closing the engines
returns every byte they allocated. On the CPU (the dry run) there are no CUDA events or graphs:
*graphs* runs the padded blocks eagerly, as *padded* does.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import report  # noqa: E402
from bench_model import default_model, model_checkpoints, scene, settings_for  # noqa: E402
from variants import LABELS  # noqa: E402
import clustvit_ros  # noqa: E402
from clustvit_ros.model import MergeBudget  # noqa: E402
from clustvit_ros.model.configs import HEADS  # noqa: E402
from clustvit_ros.runtime.block_graphs import BlockGraphs, padded_gflops  # noqa: E402
from clustvit_ros.runtime.options import DTYPE_NAMES  # noqa: E402
from clustvit_ros.runtime.device import device_scope  # noqa: E402
from clustvit_ros.runtime.engine import Engine, Result  # noqa: E402
from clustvit_ros.runtime.timing import StageClock  # noqa: E402

SECTION = "gpu"
MODES = ("eager", "padded", "graphs")
REFERENCE = "fp32"
AGREE_DTYPE = 0.999
DECISIVE_GAP = 0.1  # x the std of the fp32 logits: a top-2 gap no fp16/bf16 rounding closes
PAPER_VIT_T = 0.95  # the ClustViT paper's ViT-T speed-up over dense on its GPU
FILES = {"section": "bench_gpu.md", "log": "bench_gpu.log", "data": "bench_gpu.json", "plot": "bench_gpu.png"}
ROS_MODULES = ("rclpy", "ament_index_python", "rosidl_runtime_py", "rclpy_message_converter")
log = logging.getLogger("bench_gpu")


@dataclass
class Cell:
    """One (dtype, mode, setting): timings, GFLOPs and the labels of its last frame."""

    model_ms: list[float] = field(default_factory=list)
    e2e_ms: list[float] = field(default_factory=list)
    gflops: float = float("nan")
    padded_gflops: float = float("nan")
    kept: int = 0
    labels: np.ndarray | None = None


@dataclass
class ModelRun:
    name: str
    size: tuple[int, int]
    trained: bool
    labels: list[str]                                # setting labels, dense first
    cells: dict[tuple[str, str, str], Cell]          # (dtype, mode, setting label)
    decisive: dict[str, np.ndarray]                  # setting label -> pixels with a clear fp32 winner
    graphs: dict[str, int]                           # graphs captured per dtype
    leaked_mib: dict[str, float]                     # GPU memory still allocated after close, per dtype


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, help="folder for every result (section, log, data, plot)")
    p.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu for a dry run of the script")
    p.add_argument("--variants", nargs="*", default=["tiny", "small", "base"], choices=list(LABELS))
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--classes", type=int, default=150)
    p.add_argument("--head", default="mask", choices=HEADS)
    p.add_argument("--budgets", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    p.add_argument("--bias", type=float, default=100.0, help="merge_bias that makes every token merge")
    p.add_argument("--dtypes", nargs="+", default=list(DTYPE_NAMES), choices=DTYPE_NAMES)
    p.add_argument("--iters", type=int, default=50, help="timed frames per setting and mode (default 50)")
    p.add_argument("--warmup", type=int, default=10, help="untimed frames per setting and mode (default 10; "
                   "the graphs engine captures on its first)")
    p.add_argument("--default-model", type=Path, help="default: the packaged default model (camvid)")
    p.add_argument("--default-input-size", type=int, nargs=2, metavar=("H", "W"),
                   help="the default model's input size (default: the size it was trained at)")
    p.add_argument("--no-default", action="store_true", help="skip the default model")
    p.add_argument("--doc", type=Path, help="also replace this markdown file's gpu section (PNG beside it)")
    p.add_argument("--publish", type=Path, metavar="OUT",
                   help="no run: put the section a run wrote in OUT into --doc (its PNG beside it)")
    args = p.parse_args(argv)
    if args.publish and not args.doc:
        p.error("--publish needs --doc")
    if not args.publish and not args.out:
        p.error("--out is required (the folder every result goes to)")
    return args


def timed_run(engine: Engine, rgb: np.ndarray, budget: MergeBudget) -> tuple[Result, float]:
    """One frame and its end-to-end ms: CUDA events on the engine's device around `Engine.run`."""
    clock = StageClock(engine.device)
    clock.mark()
    result = engine.run(rgb, budget)  # ends with the labels on the host
    clock.mark()
    return result, clock.durations_ms()[0]


def make_engines(checkpoint: Path, size: tuple[int, int], dtype: str, device: str) -> dict[str, Engine]:
    """The three engines of a (model, dtype): eager, padded (buckets run eagerly) and graphs."""
    cuda = device.startswith("cuda")
    engines = {}
    for mode in MODES:
        engine = Engine(checkpoint, device=device, dtype=dtype, input_size=size,
                        cuda_graphs=cuda and mode == "graphs")
        if mode == "padded" or (mode == "graphs" and not cuda):
            engine.block_graphs = BlockGraphs(engine.model, capture=False)
        for warning in engine.warnings:
            log.warning(f"engine {mode} {dtype}: {warning}")
        engines[mode] = engine
    return engines


@torch.inference_mode()
def decisive_pixels(engine: Engine, rgb: np.ndarray, budget: MergeBudget) -> np.ndarray:
    """HxW bool: pixels whose top-2 logit gap exceeds DECISIVE_GAP x the std of the logits (`engine`:
    the reference dtype; `rgb` already at the model's input size)."""
    model = engine.model
    with device_scope(engine.device):
        x = torch.from_numpy(rgb).to(engine.device).permute(2, 0, 1)[None].float()
        logits = model(model.normalize(x).to(engine.dtype), budget).logits.float()
        top2 = logits.topk(2, dim=1).values[0]
        return ((top2[0] - top2[1]) > DECISIVE_GAP * logits.std()).cpu().numpy()


def allocated_mib(device: str) -> float | None:
    """GPU memory allocated on `device` in MiB, without the workspace cuBLAS keeps per stream for the
    rest of the process (torch's own CUDA-graph code clears them the same way); None off the GPU."""
    if not device.startswith("cuda"):
        return None
    torch.cuda.synchronize(device)
    clear_workspaces = getattr(torch._C, "_cuda_clearCublasWorkspaces", None)
    if clear_workspaces is not None:
        clear_workspaces()
    return torch.cuda.memory_allocated(device) / 2**20


def run_model(name: str, checkpoint: Path, size: tuple[int, int], trained: bool, args) -> ModelRun:
    rgb = scene(size, "camvid" if trained else "synthetic")  # the default model: its own road scenes
    settings = settings_for(args.budgets, args.bias, trained)
    run = ModelRun(name, size, trained, [s.label for s in settings], {}, {}, {}, {})
    for dtype in args.dtypes:
        before = allocated_mib(args.device)
        engines = make_engines(checkpoint, size, dtype, args.device)
        if dtype == REFERENCE:
            run.decisive = {s.label: decisive_pixels(engines["eager"], rgb, s.budget) for s in settings}
        jobs = [(mode, s) for mode in MODES for s in settings]
        t0 = time.monotonic()
        for i in range(args.warmup + args.iters):
            for mode, s in jobs[i % len(jobs):] + jobs[:i % len(jobs)]:
                result, e2e = timed_run(engines[mode], rgb, s.budget)
                cell = run.cells.setdefault((dtype, mode, s.label), Cell())
                cell.gflops, cell.labels, cell.kept = result.gflops, result.labels, result.stats.kept_tokens[0]
                cell.padded_gflops = (result.gflops if mode == "eager" else
                                      padded_gflops(engines[mode].config, result.stats))
                if i >= args.warmup:
                    cell.model_ms.append(result.inference_ms)
                    cell.e2e_ms.append(e2e)
        block_graphs = engines["graphs"].block_graphs
        run.graphs[dtype] = block_graphs.graphs if block_graphs is not None else 0
        del block_graphs
        for engine in engines.values():
            engine.close()
        del engines
        after = allocated_mib(args.device)
        if before is not None:
            run.leaked_mib[dtype] = after - before
        log.info(f"  {name} {dtype}: {time.monotonic() - t0:.0f} s, {run.graphs[dtype]} graphs"
                 + (f", GPU memory after close {after - before:+.1f} MiB" if before is not None else ""))
    return run


def agreement(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> float:
    same = a == b
    return float(same[where].mean() if where is not None and where.any() else same.mean())


def dtype_agreement(run: ModelRun, dtype: str, label: str) -> float:
    ref = run.cells[REFERENCE, "eager", label].labels
    return agreement(run.cells[dtype, "eager", label].labels, ref, run.decisive.get(label))


def p50(run: ModelRun, dtype: str, mode: str, label: str, what: str = "e2e_ms") -> float:
    return report.p50(getattr(run.cells[dtype, mode, label], what))


HEADER = ["model", "dtype", "path", "GFLOPs eager / padded", "model p50 ms eager / padded / graphs",
          "e2e p50 ms eager / padded / graphs", "e2e speed-up vs dense, eager / graphs", "eager e2e efficiency",
          "padding + mask (padded ÷ eager ms)", "graphs' own speed-up (padded ÷ graphs ms)",
          "graphs vs eager (eager ÷ graphs ms)", f"labels = {REFERENCE} (decisive pixels)", "graphs labels = padded"]


def rows_of(run: ModelRun, dtypes: list[str]) -> list[list[str]]:
    rows, dense = [], run.labels[0]
    for dtype in dtypes:
        for label in run.labels:
            eager, padded, graphs = (run.cells[dtype, mode, label] for mode in MODES)
            e2e = {mode: p50(run, dtype, mode, label) for mode in MODES}
            ratio = run.cells[dtype, "eager", dense].gflops / eager.gflops
            su = {mode: p50(run, dtype, mode, dense) / e2e[mode] for mode in MODES}
            if dtype == REFERENCE:
                labels = "reference"
            elif REFERENCE in dtypes:
                share = run.decisive[label].mean()
                labels = f"{dtype_agreement(run, dtype, label):.2%} of {share:.0%}"
            else:
                labels = "n/a"
            same = agreement(graphs.labels, padded.labels)
            rows.append([f"{run.name} {run.size[0]}×{run.size[1]}", dtype, label,
                         f"{eager.gflops:.2f} / {padded.padded_gflops:.2f}",
                         " / ".join(report.fmt(p50(run, dtype, m, label, "model_ms")) for m in MODES),
                         " / ".join(report.fmt(e2e[m]) for m in MODES),
                         f"{su['eager']:.2f}× / {su['graphs']:.2f}×", f"{su['eager'] / ratio:.2f}",
                         f"{e2e['padded'] / e2e['eager']:.2f}", f"{e2e['padded'] / e2e['graphs']:.2f}×",
                         f"{e2e['eager'] / e2e['graphs']:.2f}×", labels,
                         "identical" if same == 1.0 else f"{same:.3%}"])
    return rows


def targets(runs: list[ModelRun], dtypes: list[str], cuda: bool) -> list[list[str]]:
    """Verdict rows: ClustViT not slower than dense, labels agree, GFLOPs identical, memory returned."""
    out = []
    for run in runs:
        name = f"{run.name} {run.size[0]}×{run.size[1]}"
        forced = [label for label in run.labels[1:] if "own decision" not in label]
        for dtype in dtypes:
            for mode in ("eager", "graphs"):
                worst = min(p50(run, dtype, mode, run.labels[0]) / p50(run, dtype, mode, label) for label in forced)
                out.append([name, f"ClustViT not slower than dense, {dtype} {mode} (paper ViT-T: {PAPER_VIT_T}×)",
                            f"slowest forced merge {worst:.2f}×", report.verdict(worst >= 1.0)])
        checked = run.labels if run.trained else run.labels[:1]
        for dtype in (d for d in dtypes if REFERENCE in dtypes and d != REFERENCE):
            low = min(dtype_agreement(run, dtype, label) for label in checked)
            where = "every setting" if run.trained else "dense path"
            out.append([name, f"{dtype} labels = {REFERENCE} labels on ≥ {AGREE_DTYPE:.1%} of the decisive pixels "
                        f"({where})", f"lowest {low:.2%}", report.verdict(low >= AGREE_DTYPE)])
        low = min(agreement(run.cells[d, "graphs", label].labels, run.cells[d, "padded", label].labels)
                  for d in dtypes for label in run.labels)
        out.append([name, "graphs labels = padded eager labels, every pixel of every row", f"lowest {low:.3%}",
                    report.verdict(low == 1.0)])
        same = all(len({run.cells[d, m, label].gflops for d in dtypes for m in MODES}) == 1
                   for label in [run.labels[0], *forced])
        out.append([name, "GFLOPs identical across dtypes and modes (dense, forced merges)",
                    "identical" if same else "differ", report.verdict(same)])
        if cuda:
            worst = max(run.leaked_mib.values())
            out.append([name, "closing the engines returns all their GPU memory", f"{worst:+.1f} MiB left",
                        report.verdict(worst <= 0)])
    return out


def graphs_verdict(runs: list[ModelRun], dtypes: list[str]) -> str:
    def ratios(num: str, den: str) -> list[float]:
        return [p50(run, d, num, label) / p50(run, d, den, label) for run in runs for d in dtypes for label in run.labels]

    net, own, cost = ratios("eager", "graphs"), ratios("padded", "graphs"), ratios("padded", "eager")
    wins = sum(r > 1.0 for r in net)
    decision = ("wins in every row: make it the default (`cuda_graphs: true`)" if wins == len(net) else
                "does not win in every row: keep the default off")
    return (f"CUDA graphs (token-count buckets) against eager, end to end: faster in {wins} of {len(net)} rows, "
            f"median {float(np.median(net)):.2f}× (range {min(net):.2f}–{max(net):.2f}×): the graphs themselves "
            f"{float(np.median(own)):.2f}× (padded ÷ graphs), padding and the key mask cost "
            f"{float(np.median(cost)):.2f}× (padded ÷ eager), medians. It {decision}.")


def command_line(argv: list[str]) -> str:
    return f"PYTHONPATH=. {Path(sys.executable).name} benchmarks/bench_gpu.py {' '.join(argv)}".strip()


def section(runs: list[ModelRun], args, argv: list[str], machine: str, seconds: float, missing: str | None,
            planned: int, plot: bool) -> str:
    cuda = args.device.startswith("cuda")
    dry = "" if cuda else (" **CPU dry run of the script: no CUDA events or graphs (*graphs* runs the padded "
                           "blocks eagerly, as *padded*); these figures say nothing about a GPU.**")
    partial = "" if len(runs) == planned else f" **Partial: {len(runs)} of {planned} models measured.**"
    out = ["## GPU: dense ViT vs ClustViT, fp32/fp16/bf16, eager, padded and CUDA graphs (`benchmarks/bench_gpu.py`)",
           "", f"Measured {report.stamp()} with `{command_line(argv)}` in {seconds:.0f} s.{dry}{partial} Path: "
           "the runtime engine, batch 1, one synthetic scene (the default model: the demo camera's first CamVid "
           f"frame); ViT-T/S/B random weights, {args.classes} classes, {args.head} head, k=3, ip=3, merging forced "
           f"with merge_bias {args.bias:g}; the default model also runs its own decision. Per model and dtype three "
           "engines: *eager* (plain), *padded* (merged sequences padded to the graph buckets and key-masked, run "
           "eagerly) and *graphs* (`cuda_graphs`: the blocks replayed as CUDA graphs, all captured on the first "
           f"frame), every setting of all three interleaved, {args.warmup} warm-up + {args.iters} timed frames "
           "each. *model* = `Result.inference_ms` (CUDA events), *e2e* = CUDA events around the whole "
           "`Engine.run`. GFLOPs padded: what the padded blocks compute. Efficiency = speed-up ÷ GFLOPs ratio. "
           f"Decisive pixels: {REFERENCE}'s top-2 logit gap above {DECISIVE_GAP:g} × the std of its logits "
           "(the share of pixels that are is given after *of*).", "", machine, ""]
    if missing:
        out += [f"Default model: **missing** ({missing}).", ""]
    out += [report.table(HEADER, [r for run in runs for r in rows_of(run, args.dtypes)]), "",
            "Graphs captured per model and dtype: " + ", ".join(
                f"{run.name} {d} {run.graphs[d]}" for run in runs for d in args.dtypes) + ".", ""]
    if plot:
        out += [f"![e2e p50 against GFLOPs per model, dtype and mode]({FILES['plot']})", ""]
    out += ["### Targets", "", report.table(["model", "target", "measured", "result"], targets(runs, args.dtypes, cuda)),
            "", graphs_verdict(runs, args.dtypes), ""]
    return "\n".join(out)


def write_plot(runs: list[ModelRun], dtypes: list[str], path: Path) -> bool:
    """e2e p50 against GFLOPs, one panel per model, one line per dtype and mode; False without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        log.warning("no plot: matplotlib is not installed")
        return False
    fig = Figure(figsize=(4.2 * len(runs), 3.6), layout="constrained")
    styles = {"eager": "-", "padded": ":", "graphs": "--"}
    for ax, run in zip(np.atleast_1d(fig.subplots(1, len(runs))), runs):
        for i, dtype in enumerate(dtypes):
            for mode in MODES:
                cells = [run.cells[dtype, mode, label] for label in run.labels]
                x = [c.gflops if mode == "eager" else c.padded_gflops for c in cells]
                order = np.argsort(x)
                ax.plot(np.array(x)[order], np.array([report.p50(c.e2e_ms) for c in cells])[order],
                        styles[mode], marker="o", color=f"C{i}", label=f"{dtype} {mode}")
        ax.set(title=f"{run.name.split(' (')[0]} {run.size[0]}×{run.size[1]}", xlabel="GFLOPs", ylabel="e2e p50 ms")
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=7)
    fig.savefig(path, dpi=90)
    return True


def write_results(out: Path, runs: list[ModelRun], args, argv, machine: str, t0: float, missing, planned) -> str:
    plot = write_plot(runs, args.dtypes, out / FILES["plot"])
    body = report.warn_if_busy(section(runs, args, argv, machine, time.monotonic() - t0, missing, planned, plot))
    (out / FILES["section"]).write_text(body + "\n")
    data = {"command": command_line(argv), "machine": machine, "models": [
        {"name": run.name, "size": run.size, "trained": run.trained, "graphs": run.graphs,
         "gpu_memory_after_close_mib": run.leaked_mib,
         "decisive_share": {k: float(v.mean()) for k, v in run.decisive.items()},
         "cells": [{"dtype": d, "mode": m, "setting": s, **{k: v for k, v in asdict(c).items() if k != "labels"}}
                   for (d, m, s), c in run.cells.items()]} for run in runs]}
    (out / FILES["data"]).write_text(json.dumps(data, indent=1))
    return body


def summary(body: str) -> str:
    """The lines worth printing: verdict counts, every missed target, the graphs verdict."""
    rows = [line for line in body.split("### Targets", 1)[1].splitlines() if line.startswith("| ")][1:]
    missed = [line for line in rows if "**missed**" in line]
    verdict = [line for line in body.splitlines() if line.startswith("CUDA graphs (token-count buckets)")]
    return "\n".join([f"targets: {len(rows) - len(missed)} met, {len(missed)} missed", *missed, *verdict])


def environment(args) -> None:
    log.info(f"python {sys.version.split()[0]} ({sys.executable}, prefix {sys.prefix})")
    cuda = f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}" if torch.version.cuda else "no CUDA"
    log.info(f"torch {torch.__version__} ({cuda}) from {Path(torch.__file__).parent}")
    log.info(f"clustvit_ros from {Path(clustvit_ros.__file__).parent}; AMENT_PREFIX_PATH "
             f"{'set' if os.environ.get('AMENT_PREFIX_PATH') else 'unset'}; ROS modules imported: "
             f"{', '.join(m for m in ROS_MODULES if m in sys.modules) or 'none'}")
    if args.device.startswith("cuda"):
        index = torch.device(args.device).index or 0
        props = torch.cuda.get_device_properties(index)
        log.info(f"device {args.device}: {props.name}, compute capability {props.major}.{props.minor}, "
                 f"{props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs")


def publish(results: Path, doc: Path) -> int:
    section_file = results / FILES["section"]
    if not section_file.is_file():
        print(f"bench_gpu: {section_file} does not exist: nothing to publish", file=sys.stderr)
        return 1
    report.update_section(SECTION, section_file.read_text(), doc)
    if (results / FILES["plot"]).is_file():
        shutil.copyfile(results / FILES["plot"], doc.parent / FILES["plot"])
    print(f"updated {doc} (section '{SECTION}') from {results}", file=sys.stderr)
    return 0


def setup_log(out: Path) -> None:
    log.setLevel(logging.INFO)
    log.propagate = False
    for handler in (logging.FileHandler(out / FILES["log"], mode="w"), logging.StreamHandler(sys.stderr)):
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.publish:
        return publish(args.publish, args.doc)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench_gpu: no CUDA device (torch " + torch.__version__ + "); run it where a CUDA build of torch "
              "sees a GPU (README, GPU). `--device cpu` runs the script's dry run.", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    setup_log(args.out)
    environment(args)
    default, missing = default_model(args)
    t0 = time.monotonic()
    machine = report.machine(args.device, "/".join(args.dtypes))
    runs: list[ModelRun] = []
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        models = model_checkpoints(args, default, Path(tmp))
        for name, path, size, trained in models:
            if trained and args.default_input_size:
                size = tuple(args.default_input_size)
            log.info(f"{name} {size[0]}×{size[1]}")
            runs.append(run_model(name, path, size, trained, args))
            body = write_results(args.out, runs, args, argv, machine, t0, missing, len(models))
    if args.doc:
        publish(args.out, args.doc)
    print(summary(body))
    print(f"results: {', '.join(str(args.out / f) for f in FILES.values() if (args.out / f).exists())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
