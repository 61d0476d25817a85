"""The installed clustvit_node ends with code 0 on any number of SIGINT/SIGTERM at any moment.

Moments: while it imports torch and loads the model, while it runs its warm-up frame, while it
processes camera frames; and a frame longer than the node's wait at shutdown is abandoned, not
waited on, without the abort a thread left inside torch at interpreter exit causes.
"""
from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from support import processes
from support.installed import executable
from support.models import make_checkpoint
from support.node_process import unique_namespace
from support.ros_harness import Harness, rgb_image

SEQUENCES = {"ctrl-c": (signal.SIGINT,), "ctrl-c-twice": (signal.SIGINT, signal.SIGINT),
             "sigint-then-sigterm": (signal.SIGINT, signal.SIGTERM), "sigterm": (signal.SIGTERM,),
             "ctrl-c-ten-times": (signal.SIGINT,) * 10}
SHUTDOWN_S = 20.0  # generous (loaded CI machine); the node waits at most 3 s for the frame in flight
SLOW_MODEL = dict(embed_dim=192, depth=6, num_heads=3, mlp_hidden=768, cluster_hidden=192)
# About 0.5 TFLOP a frame at 1024 x 1024: seconds on any CPU, longer than the node's 3 s wait.
ENDLESS_MODEL = dict(embed_dim=384, depth=12, num_heads=6, mlp_hidden=1536, cluster_hidden=384)


@pytest.fixture(scope="module")
def slow_checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("model") / "slow.safetensors", **SLOW_MODEL)


def _start(namespace: str, log: Path, checkpoint: Path, *params: str):
    argv = [str(executable("clustvit_node")), "--ros-args", "-r", f"__ns:={namespace}",
            "-p", f"checkpoint:={checkpoint}", "-p", "device:=cpu", "-p", "threads:=1"]
    for param in params:
        argv += ["-p", param]
    proc = processes.start_logged(argv, log)
    deadline = time.monotonic() + 60
    while not processes.handles_sigterm(proc.pid):
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.005)
    return proc


def _signal_and_check(proc, log: Path, sequence: str) -> str:
    for sig in SEQUENCES[sequence]:
        proc.send_signal(sig)
        time.sleep(0.02)
    try:
        assert processes.wait_exit(proc, SHUTDOWN_S), f"still running {SHUTDOWN_S} s after the signal:\n{log.read_text()}"
    finally:
        processes.kill_group(proc)
    output = log.read_text()
    assert proc.returncode == 0, output
    assert "Traceback" not in output and "terminate called" not in output, output
    return output


def _torch_loaded(pid: int) -> bool:
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.parametrize("sequence", SEQUENCES)
@pytest.mark.parametrize("moment", ["importing", "loading"])
def test_signals_during_start_up_end_the_node_with_code_0(slow_checkpoint, tmp_path, moment, sequence):
    log = tmp_path / "node.log"
    proc = _start(unique_namespace("sigstart"), log, slow_checkpoint, "input_size:=[512,512]")
    if moment == "loading":  # torch's libraries are mapped: its import is finishing, the model loads next
        deadline = time.monotonic() + 60
        while not _torch_loaded(proc.pid):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.005)
    _signal_and_check(proc, log, sequence)


@pytest.mark.parametrize("sequence", SEQUENCES)
def test_signals_during_the_warm_up_frame_end_the_node_with_code_0(slow_checkpoint, tmp_path, sequence):
    log = tmp_path / "node.log"
    proc = _start(unique_namespace("sigwarm"), log, slow_checkpoint, "input_size:=[1024,1024]")  # ~1 s here
    processes.wait_for_text(proc, log, "warming up", 90)  # logged as the warm-up frame starts
    _signal_and_check(proc, log, sequence)


@pytest.mark.parametrize("sequence", SEQUENCES)
def test_signals_while_processing_frames_end_the_node_with_code_0(slow_checkpoint, tmp_path, rclpy_context,
                                                                  sequence):
    log = tmp_path / "node.log"
    namespace = unique_namespace("sigrun")
    proc = _start(namespace, log, slow_checkpoint, "input_size:=[512,512]")
    harness = Harness(rclpy_context, f"{namespace}/clustvit", outputs=("mask",))
    try:
        processes.wait_for_text(proc, log, "ready", 90)
        image = rgb_image(240, 320)
        harness.output_for("mask", (1, 0), 60, republish=lambda: harness.publish(image, (1, 0)))
        for i in range(5):  # frames keep coming: one is in flight or waiting when the signals land
            harness.publish(image, (2, i))
            time.sleep(0.02)
        _signal_and_check(proc, log, sequence)
    finally:
        harness.close()


def test_a_frame_longer_than_the_shutdown_wait_is_abandoned_cleanly(tmp_path):
    checkpoint = make_checkpoint(tmp_path / "endless.safetensors", **ENDLESS_MODEL)
    log = tmp_path / "node.log"
    proc = _start(unique_namespace("sigabandon"), log, checkpoint, "input_size:=[1024,1024]",
                  "merge_budget:=0.0")
    processes.wait_for_text(proc, log, "warming up", 90)
    output = _signal_and_check(proc, log, "ctrl-c-twice")
    assert "ready: warm-up frame" not in output, "the warm-up frame finished: this test needs a slower one"
    assert "abandoned" in output, output
