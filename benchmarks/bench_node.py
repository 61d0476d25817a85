"""Node level: what the ROS node adds on top of the engine, in one process and across two.

A camera publishes rgb8 synthetic robot scenes at 30 Hz (stamped with the wall clock at publish
time, as a driver stamps at capture) to a ClustViT node, in two topologies:

* **1 process**: the node (``ClustViTNode`` with parameter overrides), the camera thread and the
  receiver in one fresh process (one per cell), the node and the receiver on one
  ``SingleThreadedExecutor`` thread;
* **2 processes**: the node in its own process (``node_runner.py``: the node's own ``main()``),
  camera and receiver here, over loopback with the shipped Fast DDS profile (config/fastdds.xml).

Per processed frame: end-to-end latency = FrameStats.stamp_age_ms (input stamp -> all outputs
published; the mask is published before the stats); engine time = the engine's own preprocess +
inference + postprocess of that frame (recorded by wrapping ``Engine.run``; decode excluded);
node overhead = end-to-end - engine, split into transport in (stamp -> node callback), queue (wait
in the newest-frame slot), decode (message -> RGB) and output (mask message + publish). Also: the
rate achieved, frames dropped in the node's newest-frame slot, frames lost before the node, the
stamp age and the mask's arrival at a subscriber.

    .venv/bin/python benchmarks/bench_node.py                        # all cells, ~5 min
    .venv/bin/python benchmarks/bench_node.py --duration 3 --resolutions 640x480 --topologies 1
    .venv/bin/python benchmarks/bench_node.py --doc docs/BENCHMARKS.md
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import rosbench  # noqa: I001  first: fixes the DDS environment before rclpy loads
import report

import rclpy  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

SECTION = "node"
TOPOLOGIES = {"1": "1 process", "2": "2 processes"}
TARGET_OVERHEAD_MS = 5.0
TARGET_OVERHEAD_SHARE = 0.10
TARGET_STAMP_AGE = 1.5


@dataclass
class Cell:
    topology: str
    model: str
    checkpoint: Path
    width: int
    height: int

    @property
    def label(self) -> str:
        return f"{TOPOLOGIES[self.topology]}, {self.model}, {self.width}×{self.height}"


@dataclass
class CellResult:
    cell: Cell
    frames: list[dict] = field(default_factory=list)
    published: int = 0
    window_s: float = 0.0
    dropped: int = 0
    unmatched: int = 0
    engine_alone: list[float] = field(default_factory=list)
    camera_errors: int = 0
    error: str = ""

    def col(self, name: str) -> list[float]:
        return [f[name] for f in self.frames if f.get(name) is not None]

    @property
    def lost(self) -> int:
        return max(0, self.published - len(self.frames) - self.dropped)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["small", "default"],
                   help="'small' (random 4-block model, see rosbench.BENCH_MODELS), 'default' "
                        "(the packaged model, skipped with a note when missing) or .safetensors paths")
    p.add_argument("--default-model", type=Path, help="checkpoint used for 'default' (default: the packaged one)")
    p.add_argument("--resolutions", nargs="+", default=["640x480", "1280x720"])
    p.add_argument("--topologies", nargs="+", default=["1", "2"], choices=list(TOPOLOGIES))
    p.add_argument("--rate", type=float, default=30.0, help="camera rate in Hz (default 30)")
    p.add_argument("--duration", type=float, default=15.0, help="seconds measured per cell (default 15)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds after the first frame, not measured")
    p.add_argument("--merge-budget", type=float, default=1.0, help="node merge_budget (default 1)")
    p.add_argument("--threads", type=int, default=0, help="node threads parameter (default 0: follow the load)")
    p.add_argument("--doc", type=Path, help="update this markdown file's node section (+ PNG beside it)")
    p.add_argument("--logs", type=Path, help="folder for the node processes' output (default: temporary)")
    return p.parse_args(argv)


def resolve_models(names: list[str], tmp: Path, default: Path | None) -> tuple[list[tuple[str, Path]], list[str]]:
    from clustvit_ros.runtime.packaged import default_checkpoint

    models, notes = [], []
    for name in names:
        if name in rosbench.BENCH_MODELS:
            path = rosbench.make_bench_checkpoint(name, tmp / f"{name}.safetensors")
            models.append((f"{name} (random weights)", path))
        elif name == "default":
            path = default or default_checkpoint(Path(sys.prefix) / "share" / "clustvit_ros")
            if path.is_file():
                models.append(("default model" if default is None else f"default model ({path})", path))
            else:
                notes.append(f"Default model: **missing** (`{path}` does not exist); only the small model ran.")
        else:
            models.append((Path(name).stem, Path(name)))
    return models, notes


def engine_alone(cell: Cell, merge_budget: float, threads: int, iters: int = 20) -> list[float]:
    """The same engine on the same frames, back to back, in a fresh process's main thread, no ROS.

    A process of its own: torch must not run on this process's main thread before the node's worker
    thread does -- a second thread using torch's OpenMP pool in one process runs slower
    (docs/decisions.md, "all torch work of the node runs on one worker thread"), which would distort
    the 1-process cells.
    """
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import bench_node; "
            "print(json.dumps(bench_node.engine_alone_here(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), "
            "float(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]))))")
    out = subprocess.run([sys.executable, "-c", code, str(Path(__file__).resolve().parent), str(cell.checkpoint),
                          str(cell.width), str(cell.height), str(merge_budget), str(threads), str(iters)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def engine_alone_here(checkpoint: str, width: int, height: int, merge_budget: float, threads: int,
                      iters: int) -> list[float]:
    from clustvit_ros.model import MergeBudget
    from clustvit_ros.ros.image_codec import to_rgb8
    from clustvit_ros.runtime.engine import Engine
    from clustvit_ros.runtime.threads import InferenceThreads

    policy = InferenceThreads(threads)  # as the node chooses them
    engine = Engine(checkpoint)
    rgbs = [to_rgb8(f) for f in rosbench.camera_frames(width, height)]
    budget = MergeBudget(merge_budget)
    out = []
    for i in range(3 + iters):
        policy.before_frame()
        r = engine.run(rgbs[i % len(rgbs)], budget)
        if i >= 3:
            out.append(r.preprocess_ms + r.inference_ms + r.postprocess_ms)
    return out


def run_cell(cell: Cell, args, logs: Path) -> CellResult:
    result = CellResult(cell)
    frames = rosbench.camera_frames(cell.width, cell.height)
    result.engine_alone = engine_alone(cell, args.merge_budget, args.threads)
    ns = rosbench.unique_namespace(f"{cell.topology}p")
    fqn = f"{ns}/clustvit"
    params = {"checkpoint": str(cell.checkpoint), "merge_budget": float(args.merge_budget), "threads": args.threads}
    times: dict = {}
    times_file = logs / f"{ns.strip('/')}_engine.json"
    context = Context()
    rclpy.init(context=context)
    node = proc = spinner = camera = None
    w0 = w1 = 0
    bench = rclpy.create_node("bench_camera", namespace=ns, context=context)
    try:
        camera = rosbench.Camera(bench, f"{ns}/image", frames, args.rate)
        receiver = rosbench.Receiver.create(bench, fqn)
        if cell.topology == "1":
            from clustvit_ros.ros.node import ClustViTNode

            node = ClustViTNode(context=context, namespace=ns,
                                parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
            if not node.start():  # configure and activate, as autostart does in main()
                raise RuntimeError("the node could not be configured and activated (see its log)")
            rosbench.record_engine_times(node.engine, times)
            spinner = rosbench.Spinner(context, node, bench)
        else:
            proc = rosbench.NodeProcess.start(ns, params, logs / f"{ns.strip('/')}.log", engine_times=times_file)
            spinner = rosbench.Spinner(context, bench)
        check = proc.check if proc else None
        rosbench.wait_for(lambda: camera.pub.get_subscription_count() > 0, 120, "the node's image subscription", check)
        camera.start()
        rosbench.wait_for(receiver.count, 120, "the first FrameStats", check)
        time.sleep(args.warmup)
        receiver.take()
        w0, pub0 = time.time_ns(), camera.published
        time.sleep(args.duration)
        w1, pub1 = time.time_ns(), camera.published
        time.sleep(1.0)  # frames in flight at the end of the window
        camera.stop()
        stats, masks = receiver.take()
        result.published, result.window_s = pub1 - pub0, (w1 - w0) / 1e9
        result.camera_errors = camera.errors
    except RuntimeError as exc:
        result.error = str(exc)
        stats, masks = [], {}
    finally:
        if camera:
            camera.stop()
        if spinner:
            spinner.stop()
        if node:
            node.close()
            node.destroy_node()
        bench.destroy_node()
        rclpy.shutdown(context=context)
        if proc:
            proc.stop()
            times = rosbench.load_engine_times(times_file)
    window = [f for f in stats if w0 <= f.stamp_ns < w1] if stats else []
    if window:
        result.dropped = window[-1].stats["frames_dropped"] - window[0].stats["frames_dropped"]
    for f in window:
        s = f.stats
        eng = times.get(rosbench.engine_key(s["inference_ms"]))
        if eng is None:
            result.unmatched += 1
            continue
        e2e, engine = s["stamp_age_ms"], sum(eng)
        mask_ns = masks.get(f.stamp_ns)
        result.frames.append({
            "e2e": e2e, "engine": engine, "overhead": e2e - engine,
            "transport": e2e - s["latency_ms"], "queue": s["queue_ms"],
            "decode": s["preprocess_ms"] - eng[0], "output": s["postprocess_ms"] - eng[2],
            "mask_rx": (mask_ns - f.stamp_ns) / 1e6 if mask_ns else None,
            "rest": (e2e - engine) - (e2e - s["latency_ms"]) - s["queue_ms"] - (s["preprocess_ms"] - eng[0])
            - (s["postprocess_ms"] - eng[2]),
            "stamp_age": s["stamp_age_ms"]})
    return result


def run_cell_in_own_process(cell: Cell, args, logs: Path) -> CellResult:
    """A 1-process cell in a fresh process (node, camera and receiver all in it).

    Fresh, because torch's OpenMP threads serve at full speed only the first thread of a process that
    uses them (and the main thread): a second node worker thread in a process that already ran one
    would measure a slower engine (docs/decisions.md, "all torch work of the node runs on one
    worker thread").
    """
    spec = {"cell": {**cell.__dict__, "checkpoint": str(cell.checkpoint)},
            "args": {k: getattr(args, k) for k in ("rate", "duration", "warmup", "merge_budget", "threads")}, "logs": str(logs)}
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--cell", json.dumps(spec)],
                          capture_output=True, text=True)
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    if proc.returncode != 0 or not last.startswith("{"):
        return CellResult(cell, error=f"cell process exited with {proc.returncode}: {proc.stderr[-2000:]}")
    data = json.loads(last)
    return CellResult(cell, **{k: v for k, v in data.items() if k != "cell"})


def cell_main(spec_json: str) -> int:
    """Child side of run_cell_in_own_process: run one cell here, print its result as JSON."""
    spec = json.loads(spec_json)
    cell = Cell(**{**spec["cell"], "checkpoint": Path(spec["cell"]["checkpoint"])})
    r = run_cell(cell, argparse.Namespace(**spec["args"]), Path(spec["logs"]))
    data = {k: v for k, v in r.__dict__.items() if k != "cell"}
    print(json.dumps(data))
    return 0


def pp(values: list[float], digits: int = 1) -> str:
    return f"{report.fmt(report.p50(values), digits)} / {report.fmt(report.p95(values), digits)}"


def latency_rows(results: list[CellResult]) -> list[list[str]]:
    rows = []
    for r in results:
        c = r.cell
        if r.error or not r.frames:
            rows.append([TOPOLOGIES[c.topology], c.model, f"{c.width}×{c.height}", "0",
                         f"failed: {r.error or 'no frames'}"] + [""] * 10)
            continue
        share = report.p50(r.col("overhead")) / report.p50(r.col("e2e"))
        rows.append([TOPOLOGIES[c.topology], c.model, f"{c.width}×{c.height}", str(len(r.frames)),
                     pp(r.col("e2e")), pp(r.col("engine")), report.fmt(report.p50(r.engine_alone)),
                     f"**{pp(r.col('overhead'))}**", f"{share:.0%}",
                     report.fmt(report.p50(r.col("transport"))), report.fmt(report.p50(r.col("queue"))),
                     report.fmt(report.p50(r.col("decode"))), report.fmt(report.p50(r.col("output"))),
                     report.fmt(report.p50(r.col("rest"))),
                     report.fmt(report.p50(r.col("mask_rx")))])
    return rows


def rate_rows(results: list[CellResult], rate: float) -> list[list[str]]:
    rows = []
    for r in results:
        c = r.cell
        if r.error or not r.frames:
            continue
        ratio = report.p95(r.col("stamp_age")) / report.p50(r.col("engine"))
        rows.append([TOPOLOGIES[c.topology], c.model, f"{c.width}×{c.height}", f"{rate:g}",
                     f"{len(r.frames) / r.window_s:.1f}", str(r.published), str(len(r.frames)), str(r.dropped),
                     str(r.lost), pp(r.col("stamp_age")), pp(r.col("engine")),
                     f"{report.p95(r.col('stamp_age')) / report.p95(r.col('engine')):.2f}",
                     f"{ratio:.2f}", report.verdict(ratio <= TARGET_STAMP_AGE)])
    return rows


def plot(results: list[CellResult], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in results if r.frames]
    parts = [("transport", "transport in", "tab:purple"), ("queue", "queue (newest-frame slot)", "tab:grey"),
             ("decode", "decode", "tab:olive"), ("engine", "engine (pre + model + post)", "tab:blue"),
             ("output", "outputs (mask msg + publish)", "tab:orange"), ("rest", "rest", "tab:brown")]
    fig, ax = plt.subplots(figsize=(11, 0.5 * len(ok) + 2.6))
    labels = [r.cell.label for r in ok]
    left = [0.0] * len(ok)
    for key, name, color in parts:
        widths = [max(0.0, report.p50(r.col(key))) for r in ok]
        ax.barh(labels, widths, left=left, color=color, label=name)
        left = [a + b for a, b in zip(left, widths)]
    ax.scatter([report.p50(r.col("e2e")) for r in ok], labels, marker="|", s=300, color="black",
               label="end-to-end p50 (stamp -> published)", zorder=3)
    ax.invert_yaxis()
    ax.set_xlabel("ms (medians per component)")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=4)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title("Where a frame's time goes: node overhead around the engine (30 Hz camera)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def targets(results: list[CellResult]) -> list[list[str]]:
    rows = []
    for r in results:
        c = r.cell
        if c.topology != "1" or (c.width, c.height) != (640, 480) or not r.frames:
            continue
        ovh, e2e = report.p50(r.col("overhead")), report.p50(r.col("e2e"))
        no_queue = report.p50([f["overhead"] - f["queue"] for f in r.frames])
        rows.append([f"node overhead ≤ {TARGET_OVERHEAD_MS:g} ms, 640×480, 1 process, {c.model}",
                     f"p50 {ovh:.1f} ms (without the slot wait {no_queue:.1f} ms)",
                     report.verdict(ovh <= TARGET_OVERHEAD_MS)])
        rows.append([f"node overhead ≤ 10 % of end-to-end, 640×480, 1 process, {c.model}",
                     f"{ovh:.1f} / {e2e:.1f} ms = {ovh / e2e:.0%}", report.verdict(ovh / e2e <= TARGET_OVERHEAD_SHARE)])
    for r in results:
        if not r.frames:
            continue
        ratio = report.p95(r.col("stamp_age")) / report.p50(r.col("engine"))
        rows.append([f"stamp age p95 ≤ 1.5 × engine p50, {r.cell.label}",
                     f"{report.p95(r.col('stamp_age')):.1f} / {report.p50(r.col('engine')):.1f} ms = {ratio:.2f}×",
                     report.verdict(ratio <= TARGET_STAMP_AGE)])
    return rows


def section(results: list[CellResult], models: str, notes: list[str], args,
            machine: str, png: str | None) -> str:
    out = ["## Node level: overhead, rate, drops, stamp age (`benchmarks/bench_node.py`)", "",
           f"Measured {report.stamp()} with `{report.command_line()}`.", "", machine,
           f"{rosbench.ros_info()}.", "",
           f"Camera: rgb8 synthetic robot scenes at {args.rate:g} Hz (reliable, depth 1), stamped with the "
           "wall clock at publish time. Node: default parameters (best-effort input, depth 1, newest-frame "
           f"slot, resize `fixed` to the model's size), merge_budget {args.merge_budget:g}, "
           f"threads {args.threads or '0 (following the load)'}, a subscriber on "
           "~/mask and ~/stats (no colour mask or overlay subscribers: those are lazy). *1 process*: node, "
           "camera thread and receiver in one fresh process per cell, node + receiver on one "
           "SingleThreadedExecutor thread. *2 processes*: the node's own `main()` in a second process, over loopback. "
           f"{args.warmup:g} s warm-up, then {args.duration:g} s measured per cell.", "",
           "End-to-end = FrameStats.stamp_age_ms (input stamp → outputs published; the mask goes out "
           "first). Engine = the engine's preprocess + model + postprocess for that frame (recorded by "
           "wrapping `Engine.run`; decode excluded). *Engine alone* = the same engine on the same frames "
           "run back to back on the main thread of a fresh process just before the cell, no ROS (20 runs): "
           "the best case; in the node the engine runs on a worker thread once per camera frame, with "
           "idle gaps in between (see the findings below for what that costs). Node "
           "overhead = end-to-end − engine = transport in + queue + decode + outputs + rest. All ms; "
           "p50 / p95 or p50.", ""]
    out += [f"Models: {models}.", ""]
    out += [n + "\n" for n in notes]
    out += ["### Latency breakdown", "",
            report.table(["topology", "model", "camera", "frames", "end-to-end", "engine in the node",
                          "engine alone, back to back p50", "node overhead",
                          "overhead share", "transport in", "queue", "decode", "outputs", "rest",
                          "mask at subscriber"], latency_rows(results)), ""]
    out += [f"### Rate, drops and stamp age under a {args.rate:g} Hz camera", "",
            report.table(["topology", "model", "camera", "camera Hz", "processed Hz", "published", "processed",
                          "dropped (newest-frame slot)", "lost before the node", "stamp age p50 / p95",
                          "engine p50 / p95", "stamp age p95 ÷ engine p95", "stamp age p95 ÷ engine p50",
                          "≤ 1.5× (p95 ÷ p50)"], rate_rows(results, args.rate)), ""]
    if png:
        out += [f"![latency breakdown per cell]({png})", ""]
    out += ["### Targets", "", report.table(["target", "measured", "result"], targets(results)), ""]
    return "\n".join(out)


def main(argv=None) -> int:
    args = parse_args(argv)
    sizes = [tuple(int(v) for v in r.lower().split("x")) for r in args.resolutions]
    with tempfile.TemporaryDirectory(prefix="bench_node_") as tmp:
        logs = args.logs or Path(tmp)
        logs.mkdir(parents=True, exist_ok=True)
        models, notes = resolve_models(args.models, Path(tmp), args.default_model)
        described = "; ".join(f"{name}: {rosbench.describe_checkpoint(path)}" for name, path in models)
        import torch  # the node's device is `auto`: the GPU when there is one

        machine = report.machine("cuda" if torch.cuda.is_available() else "cpu")
        results = []
        for name, path in models:
            for w, h in sizes:
                for topology in args.topologies:
                    cell = Cell(topology, name, path, w, h)
                    t0 = time.monotonic()
                    r = run_cell_in_own_process(cell, args, logs) if topology == "1" else run_cell(cell, args, logs)
                    results.append(r)
                    print(f"  {cell.label}: {len(r.frames)} frames, {time.monotonic() - t0:.0f} s"
                          + (f", ERROR {r.error}" if r.error else "")
                          + (f", {r.unmatched} without engine times" if r.unmatched else ""), file=sys.stderr)
    png = None
    if args.doc:
        png = "bench_node.png"
        plot(results, args.doc.parent / png)
    body = report.warn_if_busy(section(results, described, notes, args, machine, png))
    report.publish(SECTION, body, args.doc)
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--cell":
        sys.exit(cell_main(sys.argv[2]))
    sys.exit(main())
