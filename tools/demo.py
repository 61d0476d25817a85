#!/usr/bin/env python3
"""`make demo`: demo camera -> ClustViT node -> recorder, with a live merge_budget change halfway.

Starts the installed `demo_camera` and `clustvit_node` executables (what `ros2 launch clustvit_ros
demo.launch.py rviz:=false` starts, with the same parameter files), records their topics for
--duration seconds, changes `merge_budget` through the node's parameter service halfway (what
`ros2 param set /clustvit merge_budget 1.0` does), then writes to --out:

    overlay_*.png   a few overlays from each half
    stats.csv       one row per processed frame (every FrameStats field)
    cost.png        GFLOPs and latency over time; the budget change is marked
    demo.mcap       camera (JPEG), mask, mask_color, stats, diagnostics (ros2 bag play, Foxglove;
                    `clustvit bag out/demo.mcap again.mcap --topic /camera/image_raw/compressed`)
    logs/           the output of the camera and the node

and prints a summary table. Every process runs with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and
ROS_LOCALHOST_ONLY=1 (loopback only on every distro), a ROS_DOMAIN_ID of this run's own and
config/fastdds.xml; children are stopped (SIGINT, then SIGKILL)
whatever happens.
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
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CAMERA_TOPIC = "/camera/image_raw"
NODE = "/clustvit"
OVERLAY_AT = (2, 5, 9, 14, 20, 27, 35, 44, 54, 65)  # which overlays of each half are saved


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "out", help="output folder (default out/)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of processing recorded (default 20)")
    p.add_argument("--checkpoint", default=os.environ.get("CHECKPOINT", ""),
                   help="a packaged model's name (camvid, synthetic) or a .safetensors path (default: camvid)")
    p.add_argument("--budgets", type=float, nargs=2, default=(0.0, 1.0), metavar=("FIRST", "SECOND"),
                   help="merge_budget of the first and the second half (default 0 = dense, then 1 = "
                        "the model's own merging)")
    p.add_argument("--rate", type=float, default=10.0, help="camera frames per second (default 10)")
    p.add_argument("--size", type=int, nargs=2, default=(480, 360), metavar=("W", "H"),
                   help="camera image size (default 480 360)")
    p.add_argument("--source", default="camvid",
                   help="demo camera source: camvid (the packaged CamVid road frames), synthetic, a folder or a video")
    p.add_argument("--overlays", type=int, default=3, help="overlay PNGs saved per half (default 3)")
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
    print(f"demo: ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']}, model {checkpoint}, {args.duration:g} s, "
          f"merge_budget {args.budgets[0]:g} -> {args.budgets[1]:g} halfway, output in {out}/")
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
        frames, change, phases = record(args, children)
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
    plot(out / "cost.png", frames, change, args)
    print_summary(frames, phases, change, args, out, time.monotonic() - started)
    return 0


def record(args, children: Children):
    """Record until --duration seconds of frames were processed; returns (rows, change, phases)."""
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
    saved: dict[float, int] = {}
    overlay_count: dict[float, int] = {}
    budget_now = [float(args.budgets[0])]
    lock = threading.Lock()

    def on_stats(msg) -> None:
        row = {"stamp": msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9, "received": time.time()}
        row.update({name: getattr(msg, name) for name in msg.get_fields_and_field_types() if name != "header"})
        with lock:
            frames.append(row)

    def on_overlay(msg) -> None:
        budget = budget_now[0]
        n = overlay_count[budget] = overlay_count.get(budget, 0) + 1
        if saved.get(budget, 0) < args.overlays and n in OVERLAY_AT:  # spread over the half
            saved[budget] = saved.get(budget, 0) + 1
            path = args.out / f"overlay_budget{budget:.2f}_{saved[budget]}.png"
            cv2.imwrite(str(path), cv2.cvtColor(to_rgb8(msg), cv2.COLOR_RGB2BGR))

    recorder.on(f"{NODE}/stats", on_stats)
    node.create_subscription(Image, f"{NODE}/overlay", on_overlay, 10)
    spinner.start()
    params = AsyncParameterClient(node, NODE)
    change = None
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
        t0 = time.monotonic()
        while time.monotonic() - t0 < args.duration / 2:
            children.check()
            time.sleep(0.1)
        if not params.wait_for_services(timeout_sec=10.0):
            raise RuntimeError(f"{NODE}'s parameter services do not answer")
        future = params.set_parameters([Parameter("merge_budget", value=float(args.budgets[1]))])
        set_at = time.time()
        while not future.done():
            children.check()
            time.sleep(0.02)
        result = future.result().results[0]
        if not result.successful:
            raise RuntimeError(f"setting merge_budget={args.budgets[1]} was rejected: {result.reason}")
        budget_now[0] = float(args.budgets[1])
        change = set_at
        print(f"demo: set merge_budget {args.budgets[0]:g} -> {args.budgets[1]:g} through "
              f"{NODE}/set_parameters at t={time.monotonic() - t0:.1f} s: accepted")
        while time.monotonic() - t0 < args.duration:
            children.check()
            time.sleep(0.1)
    finally:
        recorder.close()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
        spinner.join(timeout=5)
    with lock:
        rows = list(frames)
    return rows, change, recorder.counts


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


def plot(path: Path, frames: list[dict], change: float | None, args) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = frames[0]["stamp"]
    t = [f["stamp"] - t0 for f in frames]
    fig, (ax_g, ax_l) = plt.subplots(2, 1, figsize=(10, 6.2), sharex=True)
    ax_g.plot(t, [f["gflops"] for f in frames], ".-", color="tab:blue", lw=1, ms=4, label="GFLOPs (this frame)")
    ax_g.plot(t, [f["dense_gflops"] for f in frames], "--", color="grey", lw=1, label="dense ViT on the same input")
    ax_g.set_ylabel("GFLOPs / frame")
    ax_g.set_ylim(bottom=0)
    ax_l.plot(t, [f["latency_ms"] for f in frames], ".-", color="tab:red", lw=1, ms=4, label="end-to-end latency")
    ax_l.plot(t, [f["inference_ms"] for f in frames], ".-", color="tab:orange", lw=1, ms=3, label="model forward")
    ax_l.set_ylabel("ms")
    ax_l.set_ylim(bottom=0)
    ax_l.set_xlabel("camera time [s]")
    for ax in (ax_g, ax_l):
        if change is not None:
            x = change - t0
            ax.axvline(x, color="black", ls=":", lw=1.5)
            ax.axvspan(t[0], x, color="tab:green", alpha=0.06)
            ax.axvspan(x, t[-1], color="tab:purple", alpha=0.06)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    if change is not None:
        ax_g.annotate(f"ros2 param set {NODE} merge_budget {args.budgets[1]:g}",
                      xy=(change - t0, ax_g.get_ylim()[1] * 0.5), xytext=(6, 0), textcoords="offset points",
                      fontsize=9)
        top = ax_g.get_ylim()[1]
        ax_g.text(t[0], top * 0.03, f" merge_budget {args.budgets[0]:g}", fontsize=9, color="tab:green")
        ax_g.text(change - t0, top * 0.03, f" merge_budget {args.budgets[1]:g}", fontsize=9, color="tab:purple")
    fig.suptitle("clustvit_ros demo: cost per frame with a live merge-budget change", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _stats(values: list[float]) -> tuple[float, float, float]:
    """Mean, p50 and p95 of the finite values (NaN when there are none)."""
    from clustvit_ros.runtime.percentile import percentile

    finite = [v for v in values if math.isfinite(v)]
    mean = sum(finite) / len(finite) if finite else math.nan
    return mean, percentile(finite, 50), percentile(finite, 95)


def print_summary(frames, counts, change, args, out: Path, wall: float) -> None:
    groups: dict[float, list[dict]] = {}  # by the merge_budget each frame says it ran with
    for f in frames:
        groups.setdefault(round(f["merge_budget"], 4), []).append(f)
    halves = [("before the change" if i == 0 else "after the change", rows_)
              for i, rows_ in enumerate(groups.values())]
    header = ["", "merge_budget", "frames", "fps", "GFLOPs", "dense", "saved", "kept tokens",
              "latency ms (mean/p50/p95)", "forward ms", "stamp age ms"]
    rows = []
    for label, rows_ in halves:
        if not rows_:
            continue
        span = rows_[-1]["stamp"] - rows_[0]["stamp"]
        g = sum(f["gflops"] for f in rows_) / len(rows_)
        d = sum(f["dense_gflops"] for f in rows_) / len(rows_)
        lat = _stats([f["latency_ms"] for f in rows_])
        rows.append([label, f"{rows_[0]['merge_budget']:g}", str(len(rows_)),
                     f"{(len(rows_) - 1) / span:.1f}" if span > 0 else "-",
                     f"{g:.3f}", f"{d:.3f}", f"{100 * (1 - g / d):.0f} %" if d else "-",
                     f"{sum(f['kept_tokens'] for f in rows_) / len(rows_):.0f} / {rows_[0]['patch_tokens']}",
                     "{:.0f} / {:.0f} / {:.0f}".format(*lat),
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
