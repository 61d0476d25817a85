"""`make demo` (tools/demo.py) in short: every output is written and the parameter changes show."""
from __future__ import annotations

import csv
import os
import subprocess
import sys

from mcap.reader import make_reader

from support.processes import REPO
from support.models import make_checkpoint


def test_short_demo_writes_everything(tmp_path):
    checkpoint = make_checkpoint(tmp_path / "tiny.safetensors")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "demo.py"), "--out", str(out), "--duration", "7.5",
         "--checkpoint", str(checkpoint), "--rate", "8", "--size", "160", "120", "--overlays", "1",
         "--budgets", "0", "1", "--busy", "1", "--domain-id", os.environ["ROS_DOMAIN_ID"]],
        capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "set merge_budget 1 through /clustvit/set_parameters" in proc.stdout, proc.stdout
    assert "set latency_target_ms " in proc.stdout and proc.stdout.count(": accepted") == 2, proc.stdout
    assert "exit codes 0, 0" in proc.stdout, proc.stdout + proc.stderr  # both children stopped cleanly
    summary = proc.stdout.split("phase ", 1)[1]
    assert "merge_budget 0 " in summary and "merge_budget 1 " in summary
    target = float(summary.split("latency_target_ms ", 1)[1].split(",")[0])
    assert target > 0 and ", 1 busy " in summary

    rows = list(csv.DictReader(open(out / "stats.csv")))
    budgets = [float(r["merge_budget"]) for r in rows]
    assert budgets[0] == 0.0 and budgets[-1] == 1.0 and budgets == sorted(budgets)
    dense = [r for r in rows if float(r["merge_budget"]) == 0.0]
    assert all(r["dense"] == "1" and float(r["gflops"]) == float(r["dense_gflops"]) for r in dense)
    assert {"t", "stamp", "gflops", "latency_ms", "kept_tokens", "frames_dropped"} <= set(rows[0])

    assert (out / "cost.png").stat().st_size > 20_000
    assert len(list(out.glob("overlay_budget0.00_*.png"))) == 1
    assert len(list(out.glob("overlay_budget1.00_*.png"))) == 1
    assert len(list(out.glob("overlay_target_*.png"))) == 1
    with open(out / "demo.mcap", "rb") as f:
        summary = make_reader(f).get_summary()
    counts = {c.topic: summary.statistics.channel_message_counts.get(c.id, 0) for c in summary.channels.values()}
    assert counts["/clustvit/stats"] >= len(rows) and counts["/camera/image_raw/compressed"] > 0
    assert counts["/clustvit/mask"] > 0
    assert {s.name for s in summary.schemas.values()} >= {
        "sensor_msgs/msg/CompressedImage", "sensor_msgs/msg/Image", "clustvit_ros/msg/FrameStats"}
