"""Holding a latency target while the robot's computer gets busy: `latency_target_ms` off and on.

The default model in the node's own process (the installed `clustvit_node`, default parameters)
segments the packaged CamVid frames from a 10 Hz camera (rgb8, published from this process, over
loopback with the shipped Fast DDS profile). The load beside it steps through PHASES: idle, one
busy Python loop, two multi-threaded torch training loops, idle again (the competitors of
`bench_contention.py`, each started in a session of its own, as separate programs are: with the
kernel's autogroup scheduling, processes of one session share one slice of the CPU).

The same schedule runs three times, side by side in one run, each with a fresh node:

* **off**: `latency_target_ms` 0, the user's budget (the defaults: merge_budget 1, merge_bias 0);
* **on**: `latency_target_ms` = TARGET_FACTOR x the *off* run's idle p50 latency;
* **fully merged**: merge_budget 1, merge_bias + the controller's bound (`MAX_EXTRA_BIAS`), the
  most merging the controller may choose: where its p95 is over the target, no setting holds it.

Latency is FrameStats `latency_ms` (the image received -> its outputs published), the figure the
controller holds. A frame belongs to the phase in which the camera stamped it. The on run's merge
levels per phase are written to --levels (JSON) for `accuracy_latency_target.py`, which turns them
into mIoU on held-out CamVid frames.

    .venv/bin/python benchmarks/bench_latency_target.py                 # ~6 min on 2 cores
    .venv/bin/python benchmarks/bench_latency_target.py --quick         # 4 s phases: does it run?
    .venv/bin/python benchmarks/bench_latency_target.py --doc docs/BENCHMARKS.md
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
from bench_contention import competitor_argv

import rclpy  # noqa: E402
from rclpy.context import Context  # noqa: E402

SECTION = "latency_target"
PHASES: list[tuple[str, list[str]]] = [("idle", []), ("1 busy loop", ["loop"]),
                                       ("2 torch loops", ["torch", "torch"]), ("idle again", [])]
TARGET_FACTOR = 1.25
MAX_LATE = 0.05         # share of frames over the target, where fully merged frames fit under it
RECOVERY_S = 2.0        # back at the idle phase's merge level this long after the load goes
IDLE_GFLOPS = 0.97      # idle: at least this share of the GFLOPs idle needs (no more merging)
FLOOR = (1.0, 0.0)      # the node's default merge_budget and merge_bias
LEVELS = rosbench.REPO / "out" / "latency_target_levels.json"


@dataclass
class Run:
    name: str
    params: dict
    frames: list[dict] = field(default_factory=list)  # one per processed frame, in stamp order
    phase_starts: list[float] = field(default_factory=list)  # wall clock; the end last
    error: str = ""

    def phase(self, i: int, skip_s: float = 0.0) -> list[dict]:
        """The frames stamped in phase `i` (after its first `skip_s` seconds)."""
        return [f for f in self.frames if self.phase_starts[i] + skip_s <= f["t"] < self.phase_starts[i + 1]]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--phase-s", type=float, default=20.0, help="seconds per load phase (default 20)")
    p.add_argument("--quick", action="store_true", help="4 s phases, 2 s warm-up: checks that it runs")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds of frames before the first phase")
    p.add_argument("--rate", type=float, default=10.0, help="camera rate in Hz (default 10)")
    p.add_argument("--checkpoint", default="", help="the node's checkpoint (default: the packaged model)")
    p.add_argument("--levels", type=Path, default=LEVELS, help=f"write the on run's merge levels here "
                   f"(default {LEVELS.relative_to(rosbench.REPO)})")
    p.add_argument("--doc", type=Path, help="update this markdown file's section (+ PNG beside it)")
    p.add_argument("--logs", type=Path, help="folder for the node processes' output and every run's frames "
                   "(default: temporary)")
    args = p.parse_args(argv)
    if args.quick:
        args.phase_s, args.warmup = 4.0, 2.0
    return args


def run_schedule(name: str, params: dict, args, logs: Path) -> Run:
    """One fresh node through every phase; its frames and the phases' start times."""
    run = Run(name, params)
    ns = rosbench.unique_namespace(name.split()[0])
    node_params = {**({"checkpoint": args.checkpoint} if args.checkpoint else {}), **params}
    proc = rosbench.NodeProcess.start(ns, node_params, logs / f"{ns.strip('/')}.log")
    context = Context()
    rclpy.init(context=context)
    bench = rclpy.create_node("bench_camera", namespace=ns, context=context)
    camera = spinner = None
    competitors: list[subprocess.Popen] = []
    try:
        camera = rosbench.Camera(bench, f"{ns}/image", rosbench.camvid_frames(), args.rate)
        receiver = rosbench.Receiver.create(bench, f"{ns}/clustvit", mask=False)
        spinner = rosbench.Spinner(context, bench)
        rosbench.wait_for(lambda: camera.pub.get_subscription_count() > 0, 120, "the node's subscription", proc.check)
        camera.start()
        rosbench.wait_for(receiver.count, 120, "the first FrameStats", proc.check)
        time.sleep(args.warmup)
        receiver.take()
        for _, kinds in PHASES:
            for proc_ in competitors:
                proc_.kill()
                proc_.wait()
            competitors = [subprocess.Popen(competitor_argv(kind), start_new_session=True,
                                            stdout=subprocess.DEVNULL) for kind in kinds]
            run.phase_starts.append(time.time())
            time.sleep(args.phase_s)
            proc.check()
        run.phase_starts.append(time.time())
        time.sleep(1.0)  # frames in flight
        frames, _ = receiver.take()
    except RuntimeError as exc:
        run.error, frames = str(exc), []
    finally:
        for proc_ in competitors:
            proc_.kill()
            proc_.wait()
        if camera:
            camera.stop()
        if spinner:
            spinner.stop()
        bench.destroy_node()
        rclpy.shutdown(context=context)
        proc.stop()
    run.frames = sorted(({"t": f.stamp_ns / 1e9, **f.stats} for f in frames), key=lambda f: f["t"])
    (logs / f"{ns.strip('/')}_frames.json").write_text(json.dumps({"phase_starts": run.phase_starts,
                                                                  "frames": run.frames}))
    return run


# Figures ---------------------------------------------------------------------------------------

def level(frame: dict) -> tuple[float, float]:
    """A frame's merge level: the controller's ladder raises the budget, then the bias."""
    return frame["merge_budget"], frame["merge_bias"]


def at_floor(frame: dict) -> bool:
    return level(frame) == FLOOR


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


def late_share(frames: list[dict], target: float) -> float:
    return mean(f["latency_ms"] > target for f in frames)


def idle_level(run: Run) -> tuple[float, float]:
    """The merge level the first idle phase needed: its median frame's (the user's budget where the
    idle machine holds the target at it)."""
    levels = sorted(level(f) for f in run.phase(0))
    return levels[len(levels) // 2]


def recovery_s(run: Run) -> float:
    """Seconds from the last load's end to the first frame back at the idle phase's merge level or
    below (NaN: none)."""
    gone, idle = run.phase_starts[-2], idle_level(run)
    return next((f["t"] - gone for f in run.phase(len(PHASES) - 1) if level(f) <= idle), float("nan"))


def phase_rows(runs: list[Run], target: float) -> list[list[str]]:
    rows = []
    for i, (phase, _) in enumerate(PHASES):
        for run in runs:
            frames = run.phase(i)
            if not frames:
                rows.append([phase, run.name, "0"] + [""] * 7)
                continue
            lat = [f["latency_ms"] for f in frames]
            span = run.phase_starts[i + 1] - run.phase_starts[i]
            rows.append([phase, run.name, str(len(frames)), f"{len(frames) / span:.1f}",
                         report.fmt(report.p50(lat)), report.fmt(report.p95(lat)),
                         f"{100 * late_share(frames, target):.1f} %", f"{mean(f['gflops'] for f in frames):.2f}",
                         f"{mean(f['merge_bias'] for f in frames):.2f}",
                         f"{100 * mean(at_floor(f) for f in frames):.0f} %"])
    return rows


def target_rows(runs: dict[str, Run], target: float) -> list[list[str]]:
    off, on, full = runs["off"], runs["on"], runs["fully merged"]
    rows = []
    for i, (phase, _) in enumerate(PHASES):
        full_p95 = report.p95([f["latency_ms"] for f in full.phase(i)])
        share = late_share(on.phase(i), target)
        if full_p95 <= target:
            rows.append([f"{phase}: frames over the target, on", f"≤ {100 * MAX_LATE:.0f} %", f"{100 * share:.1f} %",
                         report.verdict(share <= MAX_LATE)])
        else:
            rows.append([f"{phase}: frames over the target, on", "none (fully merged p95 "
                         f"{report.fmt(full_p95)} ms > target)", f"{100 * share:.1f} %", "n/a"])
    # Idle needs no merging where the user's budget holds the target there (then on must cost what
    # off does); where idle latency itself reaches past the target, idle needs the merging that the
    # frames-over-the-target row checks, and what comes back after the load is measured against it.
    idle_late = late_share(off.phase(0), target)
    if idle_late <= MAX_LATE:
        ratio = mean(f["gflops"] for f in on.phase(0)) / mean(f["gflops"] for f in off.phase(0))
        rows.append(["idle: no merging beyond the user's budget (GFLOPs on / off)", f"≥ {IDLE_GFLOPS:.2f}",
                     f"{ratio:.3f}", report.verdict(ratio >= IDLE_GFLOPS)])
    else:
        rows.append(["idle: no merging beyond the user's budget (GFLOPs on / off)",
                     f"none (at the user's budget {100 * idle_late:.1f} % of idle frames are over the target)",
                     f"{mean(f['gflops'] for f in on.phase(0)) / mean(f['gflops'] for f in off.phase(0)):.3f}",
                     "n/a"])
    last = len(PHASES) - 1
    ratio = mean(f["gflops"] for f in on.phase(last, RECOVERY_S)) / mean(f["gflops"] for f in on.phase(0))
    rows.append([f"{PHASES[last][0]}: no more merging than idle before the load (GFLOPs, after the first "
                 f"{RECOVERY_S:g} s / idle)", f"≥ {IDLE_GFLOPS:.2f}", f"{ratio:.3f}",
                 report.verdict(ratio >= IDLE_GFLOPS)])
    back = recovery_s(on)
    rows.append(["back at the idle phase's merge level after the load goes", f"≤ {RECOVERY_S:g} s",
                 f"{back:.2f} s", report.verdict(back <= RECOVERY_S)])
    return rows


def levels_by_phase(run: Run) -> list[dict]:
    """Each phase's merge levels (budget, bias) with their frame counts."""
    out = []
    for i, (phase, _) in enumerate(PHASES):
        counts: dict[str, int] = {}
        for f in run.phase(i):
            key = f"{f['merge_budget']:.4g}:{f['merge_bias']:.4g}"
            counts[key] = counts.get(key, 0) + 1
        out.append({"phase": phase, "levels": counts})
    return out


def plot(runs: list[Run], target: float, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"off": "tab:grey", "on": "tab:red", "fully merged": "tab:blue"}
    fig, (ax_l, ax_g, ax_m) = plt.subplots(3, 1, figsize=(11, 8.5), sharex=True,
                                           gridspec_kw={"height_ratios": (3, 2, 2)})
    for run in runs:
        frames = [f for i in range(len(PHASES)) for f in run.phase(i)] if run.phase_starts else []
        if not frames:
            continue
        t = [f["t"] - run.phase_starts[0] for f in frames]
        ax_l.plot(t, [f["latency_ms"] for f in frames], ".-", lw=0.8, ms=2.5, color=colors[run.name],
                  label=f"{run.name}")
        ax_g.plot(t, [f["gflops"] for f in frames], ".-", lw=0.8, ms=2.5, color=colors[run.name],
                  label=run.name)
        if run.name == "on":
            ax_m.step(t, [f["merge_bias"] for f in frames], where="post", color="tab:brown",
                      label="merge_bias (on)")
            ax_m.step(t, [f["merge_budget"] for f in frames], where="post", color="tab:green",
                      label="merge_budget (on)")
    ax_l.axhline(target, color="black", ls="--", lw=1.2, label=f"target {target:.0f} ms")
    ends = runs[0].phase_starts
    for i, (phase, _) in enumerate(PHASES):
        begin, end = ends[i] - ends[0], ends[i + 1] - ends[0]
        for ax in (ax_l, ax_g, ax_m):
            ax.axvspan(begin, end, color=f"C{i}", alpha=0.06)
        ax_l.text(begin, 0.02, f" {phase}", transform=ax_l.get_xaxis_transform(), fontsize=9)
    ax_l.set_ylabel("latency ms (received → published)")
    ax_l.set_ylim(bottom=0)
    ax_g.set_ylabel("GFLOPs / frame")
    ax_g.set_ylim(bottom=0)
    ax_m.set_ylabel("merge level")
    ax_m.set_xlabel("seconds since the first phase began")
    for ax in (ax_l, ax_g, ax_m):
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
    fig.suptitle(f"latency_target_ms {target:.0f} ({TARGET_FACTOR:g}× the idle p50) off and on, "
                 "load stepped beside the node", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def section(runs: dict[str, Run], target: float, args, machine: str, png: str | None) -> str:
    out = ["## Holding a latency target under load (`benchmarks/bench_latency_target.py`)", "",
           f"Measured {report.stamp()} with `{report.command_line()}`.", "", machine,
           f"{rosbench.ros_info()}.", "",
           f"The default model in the node's own process with default parameters (threads following the "
           f"load), the packaged CamVid frames from a {args.rate:g} Hz camera; load phases of "
           f"{args.phase_s:g} s each: " + " → ".join(p for p, _ in PHASES) + ". What runs, the three runs "
           "and the competitors: the script's docstring. Latency: FrameStats `latency_ms`, the image "
           f"received → its outputs published. Target: {TARGET_FACTOR:g} × the off run's idle p50 = "
           f"**{target:.1f} ms**.", ""]
    failed = [r for r in runs.values() if r.error]
    out += [f"**{r.name} run failed:** {r.error}\n" for r in failed]
    out += ["### Per phase", "",
            report.table(["phase", "run", "frames", "frames/s", "latency p50 ms", "p95 ms", "over the target",
                          "GFLOPs", "merge_bias (mean)", "at the user's budget"],
                         phase_rows(list(runs.values()), target)), ""]
    if png:
        out += [f"![latency and merge level over time]({png})", ""]
    if not failed:
        out += ["### Targets", "", report.table(["target", "needs", "measured", ""], target_rows(runs, target)), ""]
    out += ["What the merging chosen under each load costs in accuracy: the next section "
            "(`benchmarks/accuracy_latency_target.py`, from this run's merge levels).", ""]
    return "\n".join(out)


def main(argv=None) -> int:
    args = parse_args(argv)
    from clustvit_ros.runtime.latency_target import MAX_EXTRA_BIAS

    import torch  # the node's device is `auto`: the GPU when there is one

    machine = report.machine("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory(prefix="bench_latency_target_") as tmp:
        logs = args.logs or Path(tmp)
        logs.mkdir(parents=True, exist_ok=True)
        runs = {"off": run_schedule("off", {}, args, logs)}
        idle = [f["latency_ms"] for f in runs["off"].phase(0)] if runs["off"].frames else []
        if not idle:
            print(f"error: the off run processed no frame: {runs['off'].error}", file=sys.stderr)
            return 1
        target = round(TARGET_FACTOR * report.p50(idle), 1)
        print(f"  off: {len(runs['off'].frames)} frames, idle p50 {report.p50(idle):.1f} ms -> target {target} ms",
              file=sys.stderr)
        for name, params in (("on", {"latency_target_ms": target}),
                             ("fully merged", {"merge_bias": float(MAX_EXTRA_BIAS)})):
            runs[name] = run_schedule(name, params, args, logs)
            print(f"  {name}: {len(runs[name].frames)} frames" + (f", ERROR {runs[name].error}" if runs[name].error
                                                                   else ""), file=sys.stderr)
    args.levels.parent.mkdir(parents=True, exist_ok=True)
    args.levels.write_text(json.dumps({"target_ms": target, "checkpoint": args.checkpoint, "floor": list(FLOOR),
                                       "phases": levels_by_phase(runs["on"])}, indent=1) + "\n")
    print(f"wrote {args.levels} (the on run's merge levels per phase)", file=sys.stderr)
    png = None
    if args.doc:
        png = "bench_latency_target.png"
        plot(list(runs.values()), target, args.doc.parent / png)
    report.publish(SECTION, report.warn_if_busy(section(runs, target, args, machine, png)), args.doc)
    return 1 if any(r.error for r in runs.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
