"""Starting, stopping, pausing and overloading the node process."""
from __future__ import annotations

import signal
import time

import pytest

from support import processes
from support.models import make_checkpoint
from support.node_process import NODE_EXECUTABLE, running_node, start_node, unique_namespace
from support.ros_harness import rgb_image


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("model") / "tiny.safetensors")


def test_the_executable_is_installed_where_ros2_run_looks():
    assert NODE_EXECUTABLE.is_file() and NODE_EXECUTABLE.stat().st_mode & 0o111


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_node_answers_then_exits_cleanly_on_signal(checkpoint, sig):
    with running_node(f"checkpoint:={checkpoint}", tag="sig") as (proc, h):
        assert h.get("merge_budget") == [1.0]  # it answers its parameter service
        h.publish(rgb_image(), (1, 0))  # maybe in flight when the signal lands
        code, output = processes.stop(proc, sig)
    assert code == 0, output
    assert "Traceback" not in output
    assert "ready: warm-up frame" in output  # one blank frame ran before the first camera frame


@pytest.mark.parametrize("content", [None, b"not a safetensors file"], ids=["missing", "corrupt"])
def test_missing_or_corrupt_checkpoint_exits_non_zero_naming_the_file(tmp_path, content):
    path = tmp_path / "model.safetensors"
    if content is not None:
        path.write_bytes(content)
    proc = start_node(unique_namespace("bad"), f"checkpoint:={path}")
    assert processes.wait_exit(proc, 60), "the node kept running without a usable model"
    code, output = processes.stop(proc)
    assert code != 0
    assert str(path) in output and "cannot start" in output
    assert "Traceback" not in output


@pytest.mark.parametrize("param", ["merge_budget:=2.0", "device:=tpu", "input_size:=[100]", "dtype:=int8",
                                   "threads:=-1"])
def test_invalid_start_up_parameter_exits_non_zero_with_the_reason(checkpoint, param):
    proc = start_node(unique_namespace("badparam"), f"checkpoint:={checkpoint}", param)
    assert processes.wait_exit(proc, 60), "the node kept running with an invalid parameter"
    code, output = processes.stop(proc)
    assert code != 0 and param.split(":=")[0] in output, output


def test_enabled_false_stops_processing_and_true_resumes_it(checkpoint):
    with running_node(f"checkpoint:={checkpoint}", tag="enable") as (proc, h):
        image = rgb_image(32, 32)
        h.output_for("mask", (10, 0), republish=lambda: h.publish(image, (10, 0)))
        assert h.set(enabled=False)[0].successful
        for i in range(5):
            h.publish(image, (11, i))
            time.sleep(0.1)
        time.sleep(1.0)
        assert not [m for m in h.messages("mask") if m.header.stamp.sec == 11]
        assert h.set(enabled=True)[0].successful
        h.output_for("mask", (12, 0), republish=lambda: h.publish(image, (12, 0)))
        assert proc.poll() is None


def test_fast_camera_against_slow_model_keeps_stamp_age_bounded_and_counts_drops(tmp_path):
    # About 10 GFLOPs per frame, far slower on a CPU than a 100 Hz camera.
    slow = make_checkpoint(tmp_path / "slow.safetensors", embed_dim=192, depth=6, num_heads=3,
                           mlp_hidden=768, cluster_hidden=192)
    with running_node(f"checkpoint:={slow}", "input_size:=[512,512]", "merge_budget:=0.0",
                      tag="slow") as (proc, h):
        image = rgb_image(240, 320)
        h.output_for("stats", (20, 0), republish=lambda: h.publish(image, (20, 0)))  # warm
        sent = 0
        end = time.monotonic() + 4.0
        while time.monotonic() < end:
            now = time.time_ns()
            h.publish(image, (now // 10**9, now % 10**9))
            sent += 1
            time.sleep(0.01)
        time.sleep(1.0)
        stats = [s for s in h.messages("stats") if s.header.stamp.sec > 20]
        assert proc.poll() is None
    assert 3 <= len(stats) < sent / 2, (len(stats), sent)
    assert stats[-1].frames_dropped > 0
    engine_ms = max(s.preprocess_ms + s.inference_ms + s.postprocess_ms for s in stats)
    ages = [s.stamp_age_ms for s in stats]
    # A queue would let the age grow by ~(1 - rate ratio) * 4 s over the run; the latest-frame slot
    # bounds it by about two frames of work plus transport.
    assert max(ages) < 3 * engine_ms + 500, (ages, engine_ms)
    assert ages[-1] < ages[0] + 2 * engine_ms + 500, ages
