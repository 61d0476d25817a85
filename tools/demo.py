#!/usr/bin/env python3
"""`make demo`: demo camera -> ClustViT node -> recorder, with live parameter changes.

Starts the installed `demo_camera` and `clustvit_node` executables (what `ros2 launch clustvit_ros
demo.launch.py rviz:=false` starts, with the same parameter files) and records their topics for
--duration seconds in three phases, each change made through the node's parameter service (what
`ros2 param set` does):

    1. merge_budget FIRST (default 0: the dense ViT);
    2. merge_budget SECOND (default 1: the model's own merging);
    3. latency_target_ms = --target x the second phase's median latency, and at the same moment
       --busy busy processes start beside the node (a robot's computer getting busy): the node
       merges more to hold the target. --target 0 leaves this phase out (two halves then).

Then it writes to --out:

    overlay_*.png   a few overlays from each phase
    stats.csv       one row per processed frame (every FrameStats field)
    cost.png        GFLOPs, latency (and the target) and the merge level over time, phases marked
    demo.mcap       camera (JPEG), mask, mask_color, stats, diagnostics (ros2 bag play, Foxglove;
                    `clustvit bag out/demo.mcap again.mcap --topic /camera/image_raw/compressed`)
    logs/           the output of the camera and the node

and prints a summary table per phase. Every process runs with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
and ROS_LOCALHOST_ONLY=1 (loopback only on every distro), a ROS_DOMAIN_ID of this run's own and
config/fastdds.xml; children are stopped (SIGINT, then SIGKILL; the busy processes SIGKILL) whatever
happens.
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CAMERA_TOPIC = "/camera/image_raw"
NODE = "/clustvit"
OVERLAY_AT = (2, 5, 9, 14, 20, 27, 35, 44, 54, 65)  # which overlays of each phase are saved
BUSY_LOOP = "while True: pass"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "out", help="output folder (default out/)")
    p.add_argument("--duration", type=float, default=24.0, help="seconds of processing recorded (default 24)")
    p.add_argument("--checkpoint", default=os.environ.get("CHECKPOINT", ""),
                   help="a packaged model's name (camvid, synthetic) or a .safetensors path (default: camvid)")
    p.add_argument("--budgets", type=float, nargs=2, default=(0.0, 1.0), metavar=("FIRST", "SECOND"),
                   help="merge_budget of the first and the second phase (default 0 = dense, then 1 = "
                        "the model's own merging)")
    p.add_argument("--target", type=float, default=1.25,
                   help="third phase: latency_target_ms = this x the second phase's median latency "
                        "(default 1.25; 0 = no third phase)")
    p.add_argument("--busy", type=int, default=len(os.sched_getaffinity(0)),
                   help="busy processes started with the target (default: one per core)")
    p.add_argument("--rate", type=float, default=10.0, help="camera frames per second (default 10)")
    p.add_argument("--size", type=int, nargs=2, default=(480, 360), metavar=("W", "H"),
                   help="camera image size (default 480 360)")
    p.add_argument("--source", default="camvid",
                   help="demo camera source: camvid (the packaged CamVid road frames), synthetic, a folder or a video")
    p.add_argument("--overlays", type=int, default=3, help="overlay PNGs saved per phase (default 3)")
    p.add_argument("--domain-id", type=int, default=int(os.environ.get("DEMO_DOMAIN_ID", "0")),
                   help="ROS_DOMAIN_ID (default: a random one in 1..100)")
    p.add_argument("--startup-timeout", type=float, default=180.0,
                   help="seconds to wait for the first processed frame (default 180)")
    return p.parse_args(argv)


def configure_environment(args) -> dict:
    """Loopback-only DDS on a domain of our own, large-image Fast DDS profile; before rclpy loads."""
    env = os.environ
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"  # Iron and later
    env["ROS_LOCALHOST_ONLY"] = "1"  # Humble (Kilted ignores it)
    env["ROS_DOMAIN_ID"] = str(args.domain_id or random.SystemRandom().randint(1, 100))
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(REPO / "config" / "fastdds.xml")
    env.setdefault("AMENT_PREFIX_PATH", sys.prefix)
    env["PYTHONUNBUFFERED"] = "1"
    return dict(env)


STOP_GRACE_S = 10.0  # after SIGINT, a child still running is killed


class Children:
    """Child processes in their own process groups; stop() sends SIGINT, then SIGKILL after a grace time."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.procs: list[tuple[str, subprocess.Popen, object]] = []

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "w")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append((name, proc, log))
        return proc

    def check(self) -> None:
        for name, proc, _ in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with code {proc.returncode}:\n{self.tail(name)}")

    def tail(self, name: str, lines: int = 25) -> str:
        text = (self.log_dir / f"{name}.log").read_text(errors="replace").splitlines()
        return "\n".join("    " + line for line in text[-lines:])

    def stop(self, grace: float = STOP_GRACE_S) -> dict[str, int | None]:
        for _, proc, _ in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace
        codes = {}
        for name, proc, log in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
            codes[name] = proc.returncode
            log.close()
        return codes


def main(argv=None) -> int:
    args = parse_args(argv)
    configure_environment(args)
    sys.path.insert(0, str(REPO))
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    from clustvit_ros.runtime.packaged import resolve_checkpoint

    try:  # where `ros2 run` looks: the venv (make setup), a colcon workspace or /opt/ros
        prefix = Path(get_package_prefix("clustvit_ros"))
    except PackageNotFoundError:
        print("error: clustvit_ros is not installed; run `make setup` first (or source its workspace)",
              file=sys.stderr)
        return 2
    checkpoint = resolve_checkpoint(args.checkpoint, prefix / "share" / "clustvit_ros")
    if not checkpoint.is_file():
        print(f"error: model {checkpoint} does not exist; give `make demo CHECKPOINT=NAME_OR_PATH` "
              "(camvid, synthetic or a .safetensors file)", file=sys.stderr)
        return 2
    lib = prefix / "lib" / "clustvit_ros"

    out = args.out
    (out / "logs").mkdir(parents=True, exist_ok=True)
    for old in [*out.glob("overlay_*.png"), out / "stats.csv", out / "cost.png", out / "demo.mcap"]:
        old.unlink(missing_ok=True)
    children = Children(out / "logs")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` of make: stop children too
    plan = f"merge_budget {args.budgets[0]:g} -> {args.budgets[1]:g}" + (
        f" -> latency_target_ms {args.target:g} x median with {args.busy} busy process(es)" if args.target else "")
    print(f"demo: ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']}, model {checkpoint}, {args.duration:g} s, "
          f"{plan}, output in {out}/")
    started = time.monotonic()
    try:
        children.start("camera", [
            str(lib / "demo_camera"), "--ros-args", "-r", "__ns:=/camera",
            "--params-file", str(REPO / "config" / "demo_camera.yaml"),
            "-p", f"source:={args.source}", "-p", f"rate:={float(args.rate)}",
            "-p", f"width:={args.size[0]}", "-p", f"height:={args.size[1]}",
            "-p", "publish_compressed:=true"])
        children.start("node", [
            str(lib / "clustvit_node"), "--ros-args", "-r", f"image:={CAMERA_TOPIC}",
            "--params-file", str(REPO / "config" / "demo.yaml"),
            "-p", f"checkpoint:={checkpoint}", "-p", f"merge_budget:={float(args.budgets[0])}"])
        frames, phases, counts = record(args, children)
    except KeyboardInterrupt:
        print("demo: interrupted", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 1
    finally:
        codes = children.stop()
    print(f"demo: stopped camera and node (exit codes {codes['camera']}, {codes['node']})")
    for name, code in codes.items():
        if code != 0:
            why = (f"killed: it did not stop within {STOP_GRACE_S:g} s of SIGINT"
                   if code == -signal.SIGKILL else f"code {code}")
            print(f"demo: warning: {name} did not exit cleanly ({why}); the end of its log:\n"
                  f"{children.tail(name)}", file=sys.stderr)
    if not frames:
        print("demo: error: no frame was processed", file=sys.stderr)
        return 1
    write_csv(out / "stats.csv", frames)
    plot(out / "cost.png", frames, phases)
    print_summary(frames, phases, counts, out, time.monotonic() - started)
    return 0


@dataclass
class Phase:
    """A stretch of the demo with one set of parameters, from `start` (wall clock, when it was set)."""

    label: str
    key: str                   # names its overlay files
    start: float
    target: float | None = None

    def holds(self, row: dict, following: Phase | None) -> bool:
        """Whether the frame of `row` was processed in this phase (by when its stats arrived)."""
        return row["received"] >= self.start and (following is None or row["received"] < following.start)


def record(args, children: Children):
    """Record until --duration seconds of frames were processed, making the phase changes on the way;
    returns (rows, phases, message counts)."""
    import cv2
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient
    from sensor_msgs.msg import CompressedImage, Image

    from clustvit_ros.msg import FrameStats
    from clustvit_ros.ros.image_codec import to_rgb8
    from clustvit_ros.ros.recorder import McapRecorder
    from clustvit_ros.runtime.percentile import percentile

    rclpy.init(args=[])
    node = rclpy.create_node("clustvit_demo_recorder")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    # Raw camera images and overlays (noisy rgb8) hardly compress: the bag holds the camera's JPEGs
    # and the masks, which zstd shrinks well; overlays are only saved as PNGs.
    topics = {CAMERA_TOPIC + "/compressed": CompressedImage, f"{NODE}/mask": Image,
              f"{NODE}/mask_color": Image, f"{NODE}/stats": FrameStats, "/diagnostics": DiagnosticArray}
    recorder = McapRecorder(node, args.out / "demo.mcap", topics)
    frames: list[dict] = []
    phases = [Phase(f"merge_budget {args.budgets[0]:g}", f"budget{args.budgets[0]:.2f}", 0.0)]
    saved: dict[str, int] = {}
    overlay_count: dict[str, int] = {}
    lock = threading.Lock()
    busy: list[subprocess.Popen] = []

    def on_stats(msg) -> None:
        row = {"stamp": msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9, "received": time.time()}
        row.update({name: getattr(msg, name) for name in msg.get_fields_and_field_types() if name != "header"})
        with lock:
            frames.append(row)

    def on_overlay(msg) -> None:
        key = phases[-1].key
        n = overlay_count[key] = overlay_count.get(key, 0) + 1
        if saved.get(key, 0) < args.overlays and n in OVERLAY_AT:  # spread over the phase
            saved[key] = saved.get(key, 0) + 1
            path = args.out / f"overlay_{key}_{saved[key]}.png"
            cv2.imwrite(str(path), cv2.cvtColor(to_rgb8(msg), cv2.COLOR_RGB2BGR))

    def wait_until(seconds: float) -> None:
        while time.monotonic() - t0 < seconds:
            children.check()
            time.sleep(0.1)

    def set_parameter(name: str, value: float) -> float:
        """Set one of the node's parameters through its service; the wall-clock time it was sent."""
        if not params.wait_for_services(timeout_sec=10.0):
            raise RuntimeError(f"{NODE}'s parameter services do not answer")
        future = params.set_parameters([Parameter(name, value=value)])
        sent = time.time()
        while not future.done():
            children.check()
            time.sleep(0.02)
        result = future.result().results[0]
        if not result.successful:
            raise RuntimeError(f"setting {name}={value:g} was rejected: {result.reason}")
        print(f"demo: set {name} {value:g} through {NODE}/set_parameters at t={time.monotonic() - t0:.1f} s: "
              "accepted")
        return sent

    recorder.on(f"{NODE}/stats", on_stats)
    node.create_subscription(Image, f"{NODE}/overlay", on_overlay, 10)
    spinner.start()
    params = AsyncParameterClient(node, NODE)
    try:
        deadline = time.monotonic() + args.startup_timeout
        while not frames:
            children.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"no FrameStats on {NODE}/stats within {args.startup_timeout:g} s")
            time.sleep(0.1)
        print(f"demo: first frame processed; recording {args.duration:g} s")
        with lock:
            del frames[:]  # start the clock at a warm node
        t0, phases[0].start = time.monotonic(), time.time()
        share = 1 / 3 if args.target else 1 / 2
        wait_until(args.duration * share)
        second = Phase(f"merge_budget {args.budgets[1]:g}", f"budget{args.budgets[1]:.2f}", 0.0)
        phases.append(second)  # overlays from here on belong to it
        second.start = set_parameter("merge_budget", float(args.budgets[1]))
        if args.target:
            wait_until(args.duration * 2 * share)
            with lock:  # its first second still settles
                latencies = [f["latency_ms"] for f in frames if f["received"] >= second.start + 1.0]
            if not latencies:
                raise RuntimeError("no frame was processed in the second phase")
            target = round(args.target * percentile(latencies, 50), 1)
            third = Phase(f"latency_target_ms {target:g}, {args.busy} busy", "target", 0.0, target)
            phases.append(third)
            busy += [subprocess.Popen([sys.executable, "-c", BUSY_LOOP], start_new_session=True)
                     for _ in range(args.busy)]
            third.start = set_parameter("latency_target_ms", target)
            print(f"demo: started {args.busy} busy process(es) beside the node")
        wait_until(args.duration)
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
        recorder.close()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
        spinner.join(timeout=5)
    with lock:
        rows = list(frames)
    return rows, phases, recorder.counts


def write_csv(path: Path, frames: list[dict]) -> None:
    t0 = frames[0]["stamp"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["t", *frames[0].keys()])
        writer.writeheader()
        for row in frames:
            writer.writerow({"t": f"{row['stamp'] - t0:.4f}", **{k: _fmt(v) for k, v in row.items()}})


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.6g}"
    return int(value) if isinstance(value, bool) else value


PHASE_COLORS = ("tab:green", "tab:purple", "tab:orange")


def plot(path: Path, frames: list[dict], phases: list[Phase]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = frames[0]["received"]
    t = [f["received"] - t0 for f in frames]
    fig, (ax_g, ax_l, ax_m) = plt.subplots(3, 1, figsize=(10, 8), sharex=True,
                                           gridspec_kw={"height_ratios": (3, 3, 2)})
    ax_g.plot(t, [f["gflops"] for f in frames], ".-", color="tab:blue", lw=1, ms=4, label="GFLOPs (this frame)")
    ax_g.plot(t, [f["dense_gflops"] for f in frames], "--", color="grey", lw=1, label="dense ViT on the same input")
    ax_g.set_ylabel("GFLOPs / frame")
    ax_g.set_ylim(bottom=0)
    ax_l.plot(t, [f["latency_ms"] for f in frames], ".-", color="tab:red", lw=1, ms=4,
              label="latency (received -> published)")
    ax_l.plot(t, [f["inference_ms"] for f in frames], ".-", color="tab:orange", lw=1, ms=3, label="model forward")
    ax_l.set_ylabel("ms")
    ax_l.set_ylim(bottom=0)
    ax_m.step(t, [f["merge_budget"] for f in frames], where="post", color="tab:blue", label="merge_budget used")
    ax_m.set_ylabel("merge_budget")
    ax_m.set_ylim(-0.05, 1.05)
    ax_b = ax_m.twinx()
    ax_b.step(t, [f["merge_bias"] for f in frames], where="post", color="tab:brown", label="merge_bias used")
    ax_b.set_ylabel("merge_bias")
    ax_m.set_xlabel("time [s]")
    ends = [p.start - t0 for p in phases[1:]] + [t[-1]]
    for phase, color, end in zip(phases, PHASE_COLORS, ends):
        begin = max(0.0, phase.start - t0)
        for ax in (ax_g, ax_l, ax_m):
            ax.axvspan(begin, end, color=color, alpha=0.07)
            if begin > 0:
                ax.axvline(begin, color="black", ls=":", lw=1.2)
        ax_g.text(begin, ax_g.get_ylim()[1] * 0.03, f" {phase.label}", fontsize=9, color=color)
        if phase.target is not None:
            ax_l.hlines(phase.target, begin, end, colors="black", linestyles="--", lw=1.2,
                        label=f"latency_target_ms {phase.target:g}")
    for ax in (ax_g, ax_l, ax_m):
        ax.grid(alpha=0.3)
    ax_g.legend(loc="upper right", fontsize=8)
    ax_l.legend(loc="upper left", fontsize=8)
    lines = ax_m.get_legend_handles_labels()
    more = ax_b.get_legend_handles_labels()
    ax_m.legend(lines[0] + more[0], lines[1] + more[1], loc="upper left", fontsize=8)
    fig.suptitle("clustvit_ros demo: cost per frame with live parameter changes", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _stats(values: list[float]) -> tuple[float, float, float]:
    """Mean, p50 and p95 of the finite values (NaN when there are none)."""
    from clustvit_ros.runtime.percentile import percentile

    finite = [v for v in values if math.isfinite(v)]
    mean = sum(finite) / len(finite) if finite else math.nan
    return mean, percentile(finite, 50), percentile(finite, 95)


def print_summary(frames, phases: list[Phase], counts, out: Path, wall: float) -> None:
    header = ["phase", "frames", "fps", "GFLOPs", "dense", "saved", "kept tokens", "merge_bias (mean)",
              "latency ms (mean/p50/p95)", "over target", "forward ms", "stamp age ms"]
    rows = []
    for i, phase in enumerate(phases):
        rows_ = [f for f in frames if phase.holds(f, phases[i + 1] if i + 1 < len(phases) else None)]
        if not rows_:
            continue
        span = rows_[-1]["received"] - rows_[0]["received"]
        g = sum(f["gflops"] for f in rows_) / len(rows_)
        d = sum(f["dense_gflops"] for f in rows_) / len(rows_)
        lat = _stats([f["latency_ms"] for f in rows_])
        over = ("-" if phase.target is None else
                f"{100 * sum(f['latency_ms'] > phase.target for f in rows_) / len(rows_):.0f} %")
        rows.append([phase.label, str(len(rows_)), f"{(len(rows_) - 1) / span:.1f}" if span > 0 else "-",
                     f"{g:.3f}", f"{d:.3f}", f"{100 * (1 - g / d):.0f} %" if d else "-",
                     f"{sum(f['kept_tokens'] for f in rows_) / len(rows_):.0f} / {rows_[0]['patch_tokens']}",
                     f"{sum(f['merge_bias'] for f in rows_) / len(rows_):.2f}",
                     "{:.0f} / {:.0f} / {:.0f}".format(*lat), over,
                     f"{_stats([f['inference_ms'] for f in rows_])[0]:.0f}",
                     f"{_stats([f['stamp_age_ms'] for f in rows_])[0]:.0f}"])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    print("\n" + "  ".join(h.ljust(w) for h, w in zip(header, widths)))
    print(line)
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    print(line)
    dropped = frames[-1]["frames_dropped"]
    print(f"camera frames recorded {counts.get(CAMERA_TOPIC + '/compressed', 0)}, processed {len(frames)}, "
          f"dropped by the node (newest-frame policy) {dropped}")
    files = sorted(out.glob("overlay_*.png")) + [out / "stats.csv", out / "cost.png", out / "demo.mcap"]
    print("wrote: " + ", ".join(f"{p.relative_to(out.parent) if out.parent in p.parents else p} "
                                f"({p.stat().st_size / 1e3:.0f} kB)" for p in files if p.exists()))
    print(f"demo: done in {wall:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
