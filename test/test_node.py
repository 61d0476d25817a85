"""The node in its own process (started as `ros2 run` starts it), driven over loopback DDS."""
from __future__ import annotations

import math

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from sensor_msgs.msg import CompressedImage, Image

from clustvit_ros.ros.image_codec import image_to_numpy, rgb8_to_compressed
from support.models import CLASSES, make_checkpoint
from support.node_process import running_node
from support.ros_harness import rgb_image

ALL_OUTPUTS = ("mask", "mask_color", "overlay", "stats", "gflops", "latency_ms")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture(scope="module")
def node(checkpoint):
    # 128x128 for the model: 64 patch tokens, enough that merging pays for the Cluster module.
    with running_node(f"checkpoint:={checkpoint}", "input_size:=[128,128]", "diagnostics_period:=0.2",
                      "threads:=1", tag="node", outputs=ALL_OUTPUTS) as running:
        yield running


def _roundtrip(harness, image, stamp, output="mask", frame_id="camera"):
    return harness.output_for(output, stamp, republish=lambda: harness.publish(image, stamp, frame_id))


def test_image_in_mask_out_with_the_same_header_and_size(node):
    proc, h = node
    image = rgb_image(80, 100, seed=1)
    mask = _roundtrip(h, image, (1000, 7), frame_id="cam_optical")
    assert (mask.height, mask.width, mask.encoding) == (80, 100, "mono8")
    assert mask.header.frame_id == "cam_optical"
    assert image_to_numpy(mask).max() < len(CLASSES)
    for name in ("mask_color", "overlay"):
        out = h.output_for(name, (1000, 7))
        assert (out.height, out.width, out.encoding, out.header.frame_id) == (80, 100, "rgb8", "cam_optical")
    stats = h.output_for("stats", (1000, 7))
    assert stats.header.frame_id == "cam_optical"
    assert stats.patch_tokens == 64 and stats.kept_tokens + stats.merged_tokens == 64
    assert stats.gflops > 0 and stats.latency_ms > 0 and stats.inference_ms > 0
    assert h.messages("gflops") and h.messages("latency_ms")


def test_color_mask_uses_the_model_palette(node, checkpoint):
    from clustvit_ros.model.checkpoints import load_checkpoint

    _, h = node
    _roundtrip(h, rgb_image(48, 64, seed=2), (1001, 0))
    labels = image_to_numpy(h.output_for("mask", (1001, 0)))
    color = image_to_numpy(h.output_for("mask_color", (1001, 0)))
    palette = np.asarray(load_checkpoint(checkpoint).config.palette, dtype=np.uint8)
    np.testing.assert_array_equal(color, palette[labels])


def test_gflops_fall_as_merge_budget_rises_and_equal_dense_at_zero(node):
    _, h = node
    image = rgb_image(96, 96, seed=3)
    # A large bias makes every token want to merge, so the budget alone sets how many do.
    assert h.set(merge_bias=10.0)[0].successful
    stats = []
    try:
        for i, budget in enumerate((0.0, 0.25, 0.5, 1.0)):
            assert h.set(merge_budget=budget)[0].successful
            stats.append(_roundtrip(h, image, (2000 + i, 0), output="stats"))
    finally:
        h.set(merge_bias=0.0, merge_budget=1.0)
    assert [s.merge_budget for s in stats] == [0.0, 0.25, 0.5, 1.0]
    assert stats[0].dense and stats[0].merged_tokens == 0
    assert stats[0].gflops == pytest.approx(stats[0].dense_gflops, rel=1e-6)
    assert [s.merged_tokens for s in stats] == [0, 16, 32, 64]
    gflops = [s.gflops for s in stats]
    assert all(a > b for a, b in zip(gflops, gflops[1:])), gflops


@pytest.mark.parametrize("name, value", [
    ("merge_budget", 1.5), ("merge_budget", -0.1), ("merge_budget", math.nan), ("merge_budget", "half"),
    ("merge_bias", 50.0), ("merge_bias", math.inf), ("latency_target_ms", -5.0), ("latency_target_ms", math.nan),
    ("overlay_alpha", 2.0), ("enabled", 1),
    ("device", "cuda:0"), ("checkpoint", "/elsewhere.safetensors"), ("qos_depth", 5), ("dtype", "fp16"),
])
def test_invalid_parameters_are_rejected_with_a_reason_and_change_nothing(node, name, value):
    proc, h = node
    before = h.get(name)
    (result,) = h.set(**{name: value})
    assert not result.successful and result.reason
    assert h.get(name) == before
    assert proc.poll() is None


def test_live_parameters_apply_to_the_next_frame(node):
    _, h = node
    assert h.set(merge_budget=0.0, overlay_alpha=0.0)[0].successful
    try:
        image = rgb_image(32, 48, seed=4)
        stats = _roundtrip(h, image, (3000, 0), output="stats")
        overlay = image_to_numpy(h.output_for("overlay", (3000, 0)))
    finally:
        h.set(merge_budget=1.0, overlay_alpha=0.5)
    assert stats.dense and stats.merge_budget == 0.0
    np.testing.assert_array_equal(overlay, image_to_numpy(image))  # alpha 0: the image itself


def _diagnostics(h):
    """The node's newest /diagnostics status."""
    return next(status for array in reversed(h.messages("diagnostics")) for status in array.status
                if status.name.startswith(h.fqn))


def test_a_met_latency_target_runs_exactly_the_users_budget_and_follows_its_changes(node):
    _, h = node
    image = rgb_image(96, 96, seed=8)
    assert h.set(latency_target_ms=10000.0)[0].successful  # every frame is far quicker
    try:
        first = [_roundtrip(h, image, (7000 + i, 0), output="stats") for i in range(3)]
        assert h.set(merge_budget=0.5, merge_bias=-1.0)[0].successful
        second = [_roundtrip(h, image, (7100 + i, 0), output="stats") for i in range(3)]
        h.wait_for(lambda: h.diagnostics_value("latency_target_ms") == "10000", 10, "diagnostics")
        state = h.wait_for(lambda: (v := h.diagnostics_value("latency_target")).startswith("holding 10000 ms: ")
                           and "merge_budget 0.5" in v and v, 10, "the new floor in the diagnostics")
    finally:
        h.set(latency_target_ms=0.0, merge_budget=1.0, merge_bias=0.0)
    assert {(s.merge_budget, s.merge_bias) for s in first} == {(1.0, 0.0)}
    assert {(s.merge_budget, s.merge_bias) for s in second} == {(0.5, -1.0)}
    assert "merge_bias -1 (rung 0 of " in state


def test_an_unreachable_latency_target_merges_up_to_its_bound_and_diagnostics_say_why(node):
    from clustvit_ros.runtime.latency_target import MAX_EXTRA_BIAS

    _, h = node
    image = rgb_image(96, 96, seed=9)
    assert h.set(merge_bias=1.0, latency_target_ms=0.01)[0].successful  # no frame takes 10 us
    try:
        stats = [_roundtrip(h, image, (8000 + i, 0), output="stats") for i in range(4)]
        status = h.wait_for(lambda: (d := _diagnostics(h)).message.startswith("target 0.01 ms") and d, 10,
                            "the saturated state in /diagnostics")
        assert h.set(latency_target_ms=0.0)[0].successful
        after = _roundtrip(h, image, (8100, 0), output="stats")
        h.wait_for(lambda: h.diagnostics_value("latency_target") == "off", 10, "the target off in /diagnostics")
    finally:
        h.set(latency_target_ms=0.0, merge_bias=0.0)
    assert (stats[0].merge_budget, stats[0].merge_bias) == (1.0, 1.0)  # the first frame: the user's
    top = (1.0, 1.0 + MAX_EXTRA_BIAS)
    assert [(s.merge_budget, s.merge_bias) for s in stats[1:]] == [top] * 3
    assert stats[-1].merged_tokens >= stats[0].merged_tokens
    assert status.level == DiagnosticStatus.WARN and " ms not reachable: " in status.message
    state = next(kv.value for kv in status.values if kv.key == "latency_target")
    assert state.startswith("saturated: target 0.01 ms not reachable: ")
    assert (after.merge_budget, after.merge_bias) == (1.0, 1.0)  # off: exactly the user's again


def _bad_images() -> dict[str, Image]:
    def image(**fields):
        msg = Image()
        for key, value in fields.items():
            setattr(msg, key, value)
        return msg

    return {
        "unknown encoding": image(height=4, width=4, encoding="rgb9", step=12, data=bytes(48)),
        "float encoding": image(height=4, width=4, encoding="32FC1", step=16, data=bytes(64)),
        "step too small": image(height=8, width=8, encoding="rgb8", step=10, data=bytes(80)),
        "truncated data": image(height=8, width=8, encoding="rgb8", step=24, data=bytes(100)),
        "empty frame": image(height=0, width=0, encoding="rgb8", step=0, data=b""),
        "huge frame": image(height=100_000, width=100_000, encoding="mono8", step=100_000, data=bytes(16)),
        "odd width 4:2:2": image(height=2, width=3, encoding="yuv422", step=6, data=bytes(12)),
    }


def test_bad_input_is_counted_and_the_next_good_frame_is_processed(node):
    proc, h = node
    counted = lambda: int(h.diagnostics_value("input_errors") or 0)  # noqa: E731
    h.wait_for(lambda: h.diagnostics_value("input_errors") is not None, 10, "diagnostics")
    for i, (what, msg) in enumerate(_bad_images().items()):
        before = counted()
        h.publish(msg, (4000 + i, 0))
        h.wait_for(lambda: counted() > before, 15, f"'{what}' to be counted as an input error")
        assert proc.poll() is None, what
    mask = _roundtrip(h, rgb_image(40, 40, seed=5), (4100, 0))
    assert (mask.height, mask.width) == (40, 40)
    assert "bad input image" in (h.diagnostics_value("last_error") or "")


def test_diagnostics_report_rate_device_threads_and_model(node):
    _, h = node
    _roundtrip(h, rgb_image(32, 32, seed=6), (5000, 0))
    h.wait_for(lambda: h.diagnostics_value("frames_processed") not in (None, "0"), 10, "diagnostics")
    assert h.diagnostics_value("device") == "cpu"
    assert h.diagnostics_value("threads") == "1 (fixed)"  # the threads parameter took effect
    assert "tiny.safetensors" in h.diagnostics_value("model")
    for key in ("rate_hz", "stamp_age_ms_mean", "frames_dropped", "input_errors"):
        assert h.diagnostics_value(key) is not None, key


def test_compressed_input_and_corrupt_jpeg(checkpoint):
    with running_node(f"checkpoint:={checkpoint}", "compressed:=true", "diagnostics_period:=0.2",
                      tag="jpeg") as (proc, h):
        rgb = np.random.default_rng(7).integers(0, 256, (60, 90, 3), dtype=np.uint8)
        jpeg = rgb8_to_compressed(rgb, "jpeg")
        mask = _roundtrip(h, jpeg, (6000, 0))
        assert (mask.height, mask.width) == (60, 90)
        corrupt = CompressedImage(format="jpeg", data=bytes(jpeg.data)[: len(jpeg.data) // 2])
        h.publish(corrupt, (6001, 0))
        h.wait_for(lambda: int(h.diagnostics_value("input_errors") or 0) >= 1, 15, "corrupt JPEG counted")
        assert (_roundtrip(h, jpeg, (6002, 0)).height, proc.poll()) == (60, None)
