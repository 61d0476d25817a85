"""Soak: thousands of frames through the node in its own process; nothing may leak or drift.

The installed ``clustvit_node`` runs a small random-weight model (2 blocks of width 64, 128x128
input; rosbench.BENCH_MODELS['soak']) and is fed rgb8 synthetic scenes by a camera in this process
at a rate the model sustains. Once a second this script samples the node process (psutil): resident
memory (RSS), threads and open file descriptors. Pass criteria:

* RSS at the end grows < 5 % over RSS right after the warm-up frames;
* thread count and open file descriptors at the end equal those after the warm-up;
* stamp age stable: p50 and p95 of the last 1000 frames within 20 % (or 2 ms) of the first 1000
  frames after the warm-up.

    .venv/bin/python benchmarks/soak.py                     # 10,000 frames at 50 Hz, ~4 min
    .venv/bin/python benchmarks/soak.py --frames 1500 --warmup-frames 200
    .venv/bin/python benchmarks/soak.py --doc docs/BENCHMARKS.md
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import rosbench  # noqa: I001  first: fixes the DDS environment before rclpy loads
import report

import psutil  # noqa: E402
import rclpy  # noqa: E402
from rclpy.context import Context  # noqa: E402

SECTION = "soak"
RSS_GROWTH_LIMIT = 0.05
STAMP_AGE_TOLERANCE = (0.20, 2.0)  # relative, absolute ms


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=10_000, help="frames processed in total (default 10000)")
    p.add_argument("--warmup-frames", type=int, default=500, help="frames before the baseline sample (default 500)")
    p.add_argument("--window", type=int, default=1000, help="frames compared at start and end (default 1000)")
    p.add_argument("--rate", type=float, default=50.0, help="camera rate in Hz (default 50)")
    p.add_argument("--size", type=int, nargs=2, default=(160, 120), metavar=("W", "H"),
                   help="camera image size (default 160 120; the model resizes to 128x128)")
    p.add_argument("--doc", type=Path, help="update this markdown file's soak section (+ PNG beside it)")
    p.add_argument("--logs", type=Path, help="folder for the node's output (default: temporary)")
    args = p.parse_args(argv)
    if args.frames < args.warmup_frames + 2 * args.window:
        p.error("--frames must be at least --warmup-frames + 2 * --window")
    return args


class Sampler:
    """Samples RSS, threads and fds of `pid` every `period` s, tagged with the frames done so far."""

    def __init__(self, pid: int, frames_done, period: float = 1.0):
        self.proc = psutil.Process(pid)
        self.me = psutil.Process()
        self.cores = psutil.cpu_count() or 1
        for p in (self.proc, self.me):
            p.cpu_percent(None)
        psutil.cpu_percent(None)
        self.frames_done, self.period = frames_done, period
        self.samples: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> dict:
        with self.proc.oneshot():
            s = {"t": time.monotonic(), "frames": self.frames_done(), "rss": self.proc.memory_info().rss,
                 "threads": self.proc.num_threads(), "fds": self.proc.num_fds(),
                 "node_cpu": self.proc.cpu_percent(None) / 100}
        # CPU (in cores) used by everything except the node and this script: other load on the machine
        s["other_cpu"] = max(0.0, psutil.cpu_percent(None) / 100 * self.cores - s["node_cpu"]
                             - self.me.cpu_percent(None) / 100)
        self.samples.append(s)
        return s

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            try:
                self.sample()
            except psutil.Error:
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def run(args, logs: Path, checkpoint: Path) -> dict:
    frames = rosbench.camera_frames(args.size[0], args.size[1], count=8)
    ns = rosbench.unique_namespace("soak")
    fqn = f"{ns}/clustvit"
    context = Context()
    rclpy.init(context=context)
    bench = rclpy.create_node("soak_camera", namespace=ns, context=context)
    camera = rosbench.Camera(bench, f"{ns}/image", frames, args.rate)
    receiver = rosbench.Receiver.create(bench, fqn)
    spinner = rosbench.Spinner(context, bench)
    node = rosbench.NodeProcess.start(ns, {"checkpoint": str(checkpoint)}, logs / "soak_node.log")
    sampler = None
    started = time.monotonic()
    try:
        rosbench.wait_for(lambda: camera.pub.get_subscription_count() > 0, 120, "the node's image subscription",
                          node.check)
        camera.start()
        rosbench.wait_for(lambda: receiver.count() >= args.warmup_frames, 120 + 3 * args.warmup_frames / args.rate,
                          f"{args.warmup_frames} warm-up frames", node.check)
        sampler = Sampler(node.pid, receiver.count)
        baseline = sampler.sample()
        sampler.start()
        last_report = time.monotonic()
        timeout = 120 + 3 * args.frames / args.rate
        rosbench.wait_for(lambda: receiver.count() >= args.frames or _progress(receiver, args, last_report),
                          timeout, f"{args.frames} frames", node.check)
        sampler.stop()
        end = sampler.sample()
        published = camera.published
    finally:
        camera.stop()
        if sampler:
            sampler.stop()
        spinner.stop()
        bench.destroy_node()
        rclpy.shutdown(context=context)
        code = node.stop()
    stats, _ = receiver.take()
    return {"stats": stats, "baseline": baseline, "end": end, "samples": sampler.samples,
            "published": published, "exit_code": code, "wall_s": time.monotonic() - started}


_last_print = [0.0]


def _progress(receiver, args, _since) -> bool:
    now = time.monotonic()
    if now - _last_print[0] > 30:
        _last_print[0] = now
        print(f"  soak: {receiver.count()} / {args.frames} frames", file=sys.stderr)
    return False


def slope_per_1000(values: list[float]) -> float:
    """Least-squares slope of `values` against their index, per 1000 samples."""
    n = len(values)
    if n < 2:
        return float("nan")
    mx, my = (n - 1) / 2, sum(values) / n
    sxx = sum((i - mx) ** 2 for i in range(n))
    return 1000 * sum((i - mx) * (v - my) for i, v in enumerate(values)) / sxx


def stable(first: float, last: float) -> bool:
    rel, absolute = STAMP_AGE_TOLERANCE
    return last <= first * (1 + rel) or last - first <= absolute


def plot(result: dict, path: Path, args) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result["samples"]
    stats = result["stats"]
    fig, (ax_m, ax_t, ax_a) = plt.subplots(3, 1, figsize=(10, 7), sharex=True)
    frames = [x["frames"] for x in s]
    ax_m.plot(frames, [x["rss"] / 2**20 for x in s], color="tab:blue")
    base = result["baseline"]["rss"] / 2**20
    ax_m.axhline(base * (1 + RSS_GROWTH_LIMIT), color="tab:red", ls="--", lw=1, label="+5 % over the baseline")
    ax_m.axhline(base, color="grey", ls=":", lw=1, label="after warm-up")
    ax_m.set_ylabel("node RSS [MiB]")
    ax_m.legend(fontsize=8)
    ax_t.plot(frames, [x["threads"] for x in s], label="threads")
    ax_t.plot(frames, [x["fds"] for x in s], label="open fds")
    ax_t.set_ylabel("count")
    ax_t.legend(fontsize=8)
    ages = [f.stats["stamp_age_ms"] for f in stats]
    step = 200
    idx = list(range(step, len(ages) + 1, step))
    ax_a.plot(idx, [report.p50(ages[i - step:i]) for i in idx], label=f"p50 per {step} frames")
    ax_a.plot(idx, [report.p95(ages[i - step:i]) for i in idx], label=f"p95 per {step} frames")
    ax_a.set_ylabel("stamp age [ms]")
    ax_a.set_xlabel("frames processed")
    ax_a.set_ylim(bottom=0)
    ax_o = ax_a.twinx()
    ax_o.fill_between(frames, [x.get("other_cpu", 0.0) for x in s], step="mid", color="tab:red", alpha=0.15,
                      label="other processes' CPU [cores]")
    ax_o.set_ylim(0, max(2.0, max((x.get("other_cpu", 0.0) for x in s), default=0.0)))
    ax_o.set_ylabel("other load [cores]")
    lines, labels = ax_a.get_legend_handles_labels()
    more, more_labels = ax_o.get_legend_handles_labels()
    ax_a.legend(lines + more, labels + more_labels, fontsize=8, loc="upper left")
    for ax in (ax_m, ax_t, ax_a):
        ax.grid(alpha=0.3)
        ax.axvline(args.warmup_frames, color="black", ls=":", lw=1)
    fig.suptitle(f"Soak: {len(stats)} frames through clustvit_node at {args.rate:g} Hz", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def section(result: dict, args, machine: str, model: str, png: str | None) -> str:
    stats = result["stats"]
    b, e = result["baseline"], result["end"]
    ages = [f.stats["stamp_age_ms"] for f in stats]
    first = ages[args.warmup_frames:args.warmup_frames + args.window]
    last = ages[-args.window:]
    growth = e["rss"] / b["rss"] - 1
    after = ages[args.warmup_frames:]
    windows = [report.p95(after[i:i + args.window]) for i in range(0, len(after) - args.window + 1, args.window)]
    span_s = (stats[-1].stamp_ns - stats[0].stamp_ns) / 1e9 if len(stats) > 1 else float("nan")
    dropped = stats[-1].stats["frames_dropped"] if stats else 0
    rows = [
        ["resident memory (RSS) after warm-up → end",
         f"{b['rss'] / 2**20:.1f} → {e['rss'] / 2**20:.1f} MiB ({growth:+.2%})", "< +5 %",
         report.verdict(growth < RSS_GROWTH_LIMIT)],
        ["threads after warm-up → end", f"{b['threads']} → {e['threads']} (range {min(x['threads'] for x in result['samples'])}"
         f"–{max(x['threads'] for x in result['samples'])})", "no growth", report.verdict(e["threads"] <= b["threads"])],
        ["open file descriptors after warm-up → end", f"{b['fds']} → {e['fds']}", "no growth",
         report.verdict(e["fds"] <= b["fds"])],
        [f"stamp age p50, frames {args.warmup_frames + 1}–{args.warmup_frames + args.window} vs last {args.window}",
         f"{report.p50(first):.1f} → {report.p50(last):.1f} ms", "within 20 % or 2 ms",
         report.verdict(stable(report.p50(first), report.p50(last)))],
        ["stamp age p95, same windows", f"{report.p95(first):.1f} → {report.p95(last):.1f} ms", "within 20 % or 2 ms",
         report.verdict(stable(report.p95(first), report.p95(last)))],
        [f"stamp age trend after warm-up (least-squares slope; p95 of each {args.window}-frame window)",
         f"{slope_per_1000(ages[args.warmup_frames:]):+.2f} ms per 1000 frames; window p95 "
         f"{min(windows):.1f}–{max(windows):.1f} ms", "context (no limit)", ""],
        ["node exit on SIGINT at the end", f"code {result['exit_code']}", "0", report.verdict(result["exit_code"] == 0)],
    ]
    other = [x["other_cpu"] for x in result["samples"][1:]]
    node_cpu = [x["node_cpu"] for x in result["samples"][1:]]
    out = [f"## Soak: {len(stats):,} frames through the node, no leaks (`benchmarks/soak.py`)", "",
           f"Measured {report.stamp()} with `{report.command_line()}`.", "", machine,
           f"{rosbench.ros_info()}.", "",
           f"The installed `clustvit_node` in its own process, model {model} (random weights); camera in the "
           f"soak process: {args.size[0]}×{args.size[1]} rgb8 synthetic scenes at {args.rate:g} Hz. "
           f"{len(stats)} frames processed in {span_s:.0f} s ({len(stats) / span_s:.1f} Hz), "
           f"{result['published']} published, {dropped} dropped by the newest-frame slot. Node RSS, threads and "
           f"open fds sampled once a second with psutil; baseline after {args.warmup_frames} warm-up frames. "
           f"The node used {report.fmt(report.p50(node_cpu), 2)} cores (median); other processes on the "
           f"machine used {report.fmt(report.p50(other), 2)} cores median, {report.fmt(max(other, default=float('nan')), 2)} "
           "at most (sampled with the node; shaded in the plot: stamp-age bumps that coincide with it are "
           "outside load). `make soak` runs it.", "",
           report.table(["check", "measured", "limit", "result"], rows), ""]
    if png:
        out += [f"![node memory, threads, fds and stamp age over the soak]({png})", ""]
    return "\n".join(out)


def main(argv=None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="soak_") as tmp:
        logs = args.logs or Path(tmp)
        logs.mkdir(parents=True, exist_ok=True)
        checkpoint = rosbench.make_bench_checkpoint("soak", Path(tmp) / "soak.safetensors")
        model = rosbench.describe_checkpoint(checkpoint)
        machine = report.machine("cpu")
        result = run(args, logs, checkpoint)
    png = None
    if args.doc:
        png = "soak.png"
        plot(result, args.doc.parent / png, args)
    body = report.warn_if_busy(section(result, args, machine, model, png))
    report.publish(SECTION, body, args.doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
