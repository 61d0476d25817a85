"""Contention: the node's frame work beside other busy processes, as on a robot's shared computer.

Each cell runs, in a fresh interpreter, what the node's inference thread does per frame -- the
thread count decided by `InferenceThreads` (the node's ``threads`` parameter), then decode of an
rgb8 Image message, `Engine.run` and the mask message -- on the first thread of that process to use
torch, paced by a 30 Hz camera (a frame that takes longer is followed by the next at once, as the
node's newest-frame slot does). Forward = the model's own time (`Result.inference_ms`); frame =
decode + engine + mask message, what the node adds to a frame's latency.

Beside it, started as fresh interpreters (never forked from a process whose OpenMP pool runs):
nothing (idle); one or two plain Python busy loops; one or two multi-threaded torch loops (a small
conv net's training step with torch's default threads, like another perception node or a training
job), also two of them at nice 10 (how a robot should run a batch job beside its perception);
or a second node's frame loop on the same camera with the same policy. Policies: the thread
count and OpenMP settings tried (see POLICIES); `auto` is the node's default.

All cells run in one run, side by side; ratios are to the idle cell of `before` (torch's default
threads, one per core: no thread policy at all).

    .venv/bin/python benchmarks/bench_contention.py                  # ~13 min on 2 cores
    .venv/bin/python benchmarks/bench_contention.py --quick          # default model, 3 policies
    .venv/bin/python benchmarks/bench_contention.py --doc docs/BENCHMARKS.md
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import report  # noqa: E402
from variants import variant_checkpoint  # noqa: E402

SECTION = "contention"
CAMERA_HZ = 30.0
FRAME = REPO / "data" / "camvid_val" / "0016E5_07959.jpg"
CORES = report.usable_cores()

# name -> (threads parameter, environment set before torch loads, description)
POLICIES: dict[str, tuple[int, dict[str, str], str]] = {
    "before": (CORES, {}, f"{CORES} threads (torch's default, no thread policy)"),
    "one": (1, {}, "1 thread"),
    "passive": (CORES, {"OMP_WAIT_POLICY": "PASSIVE"}, f"{CORES} threads, OMP_WAIT_POLICY=PASSIVE"),
    "spin10k": (CORES, {"GOMP_SPINCOUNT": "10000"}, f"{CORES} threads, GOMP_SPINCOUNT=10000"),
    "auto": (0, {}, "threads following the load (`threads: 0`, the node's default)"),
}
NICE = 10  # how a robot runs a training or batch job beside its perception: `nice -n 10`
# name -> (competitor kinds, "@nice" = started under `nice -n NICE`; description)
SCENARIOS: dict[str, tuple[list[str], str]] = {
    "idle": ([], "idle"),
    "driver": (["driver"], "a driver's 30 % of a core"),
    "loop": (["loop"], "1 busy loop"),
    "torch": (["torch"], "1 torch loop"),
    "loop2": (["loop", "loop"], "2 busy loops"),
    "torch2": (["torch", "torch"], "2 torch loops"),
    "torch2_nice": (["torch@nice", "torch@nice"], f"2 torch loops at nice {NICE}"),
    "node2": ([], "a second node"),
}
# Targets, as ratios to the idle `before` cell: (p50, p95) per scenario.
TARGETS = {"driver": (2.5, 4.0), "loop": (2.5, 4.0), "torch": (2.5, 4.0), "loop2": (4.0, 6.0), "torch2": (4.0, 6.0)}
TARGET_IDLE = 1.10
TARGET_NODE2_RATE = 0.40


@dataclass
class Model:
    label: str
    checkpoint: Path
    duration: float
    policies: list[str]


@dataclass
class Cell:
    model: str
    policy: str
    scenario: str
    forward: list[float]
    frame: list[float]
    threads: list[int]
    rate: float
    rate_other: float | None = None


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--doc", type=Path, help="write the section into this markdown file")
    p.add_argument("--quick", action="store_true", help="the default model only, policies before/one/auto")
    p.add_argument("--policies", nargs="+", choices=list(POLICIES), help="default-model policies (default: all)")
    p.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS), help="scenarios (default: all)")
    p.add_argument("--duration", type=float, default=8.0, help="seconds measured per default-model cell")
    p.add_argument("--vit-s-duration", type=float, default=20.0, help="seconds measured per ViT-S cell")
    p.add_argument("--probe", nargs=4, metavar=("CHECKPOINT", "THREADS", "SECONDS", "START_AT"),
                   help=argparse.SUPPRESS)
    p.add_argument("--competitor", choices=("driver", "loop", "torch"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


# Child processes -------------------------------------------------------------------------------

def probe(checkpoint: str, threads: int, seconds: float, start_at: float) -> dict:
    """The node's per-frame work on a fresh inference thread; runs in a child process."""
    import threading

    out: dict = {}

    def work() -> None:
        import cv2

        from clustvit_ros.model import MergeBudget
        from clustvit_ros.ros.image_codec import numpy_to_image, to_rgb8
        from clustvit_ros.runtime.engine import Engine
        from clustvit_ros.runtime.threads import InferenceThreads

        policy = InferenceThreads(threads)
        engine = Engine(checkpoint, device="cpu")
        msg = numpy_to_image(cv2.cvtColor(cv2.imread(str(FRAME)), cv2.COLOR_BGR2RGB), "rgb8")
        budget = MergeBudget()
        for _ in range(3):
            policy.before_frame()
            engine.run(to_rgb8(msg), budget)
        time.sleep(max(0.0, start_at - time.time()))  # both nodes of `node2` start together
        forward, frame, used = [], [], []
        start = time.monotonic()
        tick = start
        while (now := time.monotonic()) < start + seconds:
            if now < tick:
                time.sleep(tick - now)
            tick = max(tick + 1 / CAMERA_HZ, time.monotonic())
            used.append(policy.before_frame())
            t0 = time.monotonic()
            result = engine.run(to_rgb8(msg), budget)
            numpy_to_image(result.labels, "mono8", msg.header)
            frame.append((time.monotonic() - t0) * 1e3)
            forward.append(result.inference_ms)
        out.update(forward=forward, frame=frame, threads=used, rate=len(frame) / (time.monotonic() - start))

    thread = threading.Thread(target=work, name="clustvit_inference")
    thread.start()
    thread.join()
    return out


def competitor(kind: str) -> None:
    """Burn CPU until killed: 10 ms of every 33 (a camera driver), a Python busy loop (one core) or
    a torch training loop (all threads)."""
    if kind == "driver":
        while True:
            busy_until = time.monotonic() + 0.010
            while time.monotonic() < busy_until:
                pass
            time.sleep(0.023)
    if kind == "loop":
        while True:
            pass
    import torch

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(32, 32, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 10))
    opt = torch.optim.SGD(net.parameters(), lr=1e-3)
    x, y = torch.randn(8, 3, 96, 96), torch.randint(0, 10, (8,))
    while True:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()


# Driver ----------------------------------------------------------------------------------------

def competitor_argv(kind: str) -> list[str]:
    """The command line of a competitor of `kind` ("torch", "loop", ...; "torch@nice": niced)."""
    name, _, niced = kind.partition("@")
    argv = [sys.executable, __file__, "--competitor", name]
    return ["nice", "-n", str(NICE), *argv] if niced else argv


def run_cell(model: Model, policy: str, scenario: str) -> Cell:
    threads, env, _ = POLICIES[policy]
    kinds, _ = SCENARIOS[scenario]
    base_env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    competitors = [subprocess.Popen(competitor_argv(kind), env=base_env) for kind in kinds]
    start_at = time.time() + (12.0 if scenario == "node2" else 0.0)
    probe_argv = [sys.executable, __file__, "--probe", str(model.checkpoint), str(threads),
                  str(model.duration), str(start_at)]
    probes = [subprocess.Popen(probe_argv, env={**base_env, **env}, stdout=subprocess.PIPE, text=True)
              for _ in range(2 if scenario == "node2" else 1)]
    try:
        results = []
        for proc in probes:
            stdout, _ = proc.communicate(timeout=model.duration * 4 + 120)
            if proc.returncode != 0:
                raise RuntimeError(f"probe failed ({proc.returncode}) in {policy}/{scenario}")
            results.append(json.loads(stdout.strip().splitlines()[-1]))
    finally:
        for proc in competitors + probes:
            proc.kill()
            proc.wait()
    first = results[0]
    return Cell(model.label, policy, scenario, first["forward"], first["frame"], first["threads"],
                first["rate"], results[1]["rate"] if len(results) > 1 else None)


def ratios(cell: Cell, idle: Cell) -> dict[str, float]:
    return {"forward_p50": report.p50(cell.forward) / report.p50(idle.forward),
            "forward_p95": report.p95(cell.forward) / report.p95(idle.forward),
            "frame_p50": report.p50(cell.frame) / report.p50(idle.frame),
            "frame_p95": report.p95(cell.frame) / report.p95(idle.frame)}


def model_section(model: Model, cells: dict[tuple[str, str], Cell]) -> list[str]:
    idle = cells[("before", "idle")]
    rows = []
    for policy in model.policies:
        for scenario, (_, what) in SCENARIOS.items():
            if (c := cells.get((policy, scenario))) is None:
                continue
            r = ratios(c, idle)
            rate = f"{c.rate:.1f}" + (f" + {c.rate_other:.1f}" if c.rate_other is not None else "")
            rows.append([policy, what, f"{sum(c.threads) / len(c.threads):.2f}",
                         report.fmt(report.p50(c.forward)), report.fmt(report.p95(c.forward)),
                         f"{r['forward_p50']:.2f}×", f"{r['forward_p95']:.2f}×",
                         report.fmt(report.p50(c.frame)), report.fmt(report.p95(c.frame)),
                         f"{r['frame_p50']:.2f}×", f"{r['frame_p95']:.2f}×", rate])
    out = [f"### {model.label}", "",
           f"Ratios to `before` idle (forward p50 {report.fmt(report.p50(idle.forward))} ms, p95 "
           f"{report.fmt(report.p95(idle.forward))} ms; frame p50 {report.fmt(report.p50(idle.frame))} ms, p95 "
           f"{report.fmt(report.p95(idle.frame))} ms; {idle.rate:.1f} frames/s). {len(rows)} cells of "
           f"{model.duration:g} s each.", "",
           report.table(["policy", "beside", "threads (mean)", "forward p50 ms", "p95 ms", "p50 ×", "p95 ×",
                         "frame p50 ms", "p95 ms", "p50 ×", "p95 ×", "frames/s"], rows), ""]
    return out + targets(model, cells, idle)


def targets(model: Model, cells: dict[tuple[str, str], Cell], idle: Cell) -> list[str]:
    rows = []
    auto_idle = cells[("auto", "idle")]
    ratio = report.p50(auto_idle.frame) / report.p50(idle.frame)
    rows.append(["idle speed (frame p50)", f"≤ {TARGET_IDLE:.2f}× before", f"{ratio:.2f}×",
                 report.verdict(ratio <= TARGET_IDLE)])
    for scenario, (p50_max, p95_max) in TARGETS.items():
        if ("auto", scenario) not in cells:
            continue
        r = ratios(cells[("auto", scenario)], idle)
        what = SCENARIOS[scenario][1]
        rows.append([f"{what}: frame p50 / p95", f"≤ {p50_max:g}× / ≤ {p95_max:g}×",
                     f"{r['frame_p50']:.2f}× / {r['frame_p95']:.2f}×",
                     report.verdict(r["frame_p50"] <= p50_max and r["frame_p95"] <= p95_max)])
    if node2 := cells.get(("auto", "node2")):
        worst = min(node2.rate, node2.rate_other) / idle.rate
        rows.append(["two nodes: each one's rate", f"≥ {TARGET_NODE2_RATE:.0%} of idle",
                     f"{worst:.0%} (the slower)", report.verdict(worst >= TARGET_NODE2_RATE)])
    return [f"Targets for the default (`auto`) against `before` idle, {model.label}:", "",
            report.table(["target", "needs", "measured", ""], rows), ""]


def section(models: list[Model], cells: dict[tuple[str, str, str], Cell]) -> str:
    lines = ["## Contention: inference beside other busy processes", "",
             report.machine(), f"Run {report.stamp()}: `{report.command_line()}`.", "",
             "What each cell runs, the competitors and the policies: `benchmarks/bench_contention.py`'s "
             "docstring. Policies:", ""]
    lines += [f"- `{name}`: {desc}" for name, (_, _, desc) in POLICIES.items()]
    lines.append("")
    for model in models:
        lines += model_section(model, {k[1:]: v for k, v in cells.items() if k[0] == model.label})
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.competitor:
        competitor(args.competitor)
        return 0
    if args.probe:
        checkpoint, threads, seconds, start_at = args.probe
        print(json.dumps(probe(checkpoint, int(threads), float(seconds), float(start_at))))
        return 0
    from clustvit_ros.runtime.packaged import default_checkpoint

    scenarios = [s for s in SCENARIOS if s in (args.scenarios or SCENARIOS)]
    if not {"before", "auto"} <= set(args.policies or POLICIES) or "idle" not in scenarios:
        raise SystemExit("the ratios need the `before` and `auto` policies and the `idle` scenario")

    with tempfile.TemporaryDirectory(prefix="bench_contention_") as tmp:
        policies = args.policies or (["before", "one", "auto"] if args.quick else list(POLICIES))
        models = [Model("default model (CamVid, 360×480 frames)", default_checkpoint(), args.duration,
                        [p for p in POLICIES if p in policies])]
        if not args.quick:
            vit_s = variant_checkpoint("small", Path(tmp) / "vit_s_512.safetensors")
            models.append(Model("ViT-S 512 (random weights, 150 classes, mask head)", vit_s,
                                args.vit_s_duration, ["before", "one", "auto"]))
        cells: dict[tuple[str, str, str], Cell] = {}
        for model in models:
            for scenario in scenarios:  # policies side by side within each scenario
                for policy in model.policies:
                    cell = run_cell(model, policy, scenario)
                    cells[(model.label, policy, scenario)] = cell
                    print(f"{model.label[:20]:20} {policy:8} {scenario:7} threads "
                          f"{sum(cell.threads) / len(cell.threads):.2f} forward p50 {report.p50(cell.forward):7.1f} "
                          f"p95 {report.p95(cell.forward):7.1f}  frame p50 {report.p50(cell.frame):7.1f} "
                          f"p95 {report.p95(cell.frame):7.1f}  {cell.rate:.1f} fps", flush=True)
    report.publish(SECTION, report.warn_if_busy(section(models, cells)), args.doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
