"""A frame's outputs, built once for the node and `clustvit bag`: colour, overlay, FrameStats values."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from std_msgs.msg import Header

from clustvit_ros.model.budget import MergeBudget
from clustvit_ros.msg import FrameStats
from clustvit_ros.runtime.engine import Engine
from clustvit_ros.runtime.frame import Frame, FrameTimes
from support.models import make_checkpoint


@pytest.fixture(scope="module")
def frame(tmp_path_factory):
    engine = Engine(make_checkpoint(tmp_path_factory.mktemp("model") / "tiny.safetensors"), device="cpu")
    rgb = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    return Frame(rgb, engine.run(rgb, MergeBudget(0.5, 1.0)), engine.classes.palette)


def test_color_and_overlay_are_the_palette_and_the_blend(frame):
    np.testing.assert_array_equal(frame.color, frame.palette[frame.mask])
    assert frame.color is frame.color  # computed once, shared by mask_color and overlay
    expected = np.round(0.75 * frame.rgb + 0.25 * frame.color.astype(np.float64))
    assert np.abs(frame.overlay(0.25).astype(np.float64) - expected).max() <= 1


def test_stats_fill_every_framestats_field_and_the_message_accepts_them(frame):
    times = FrameTimes.from_marks(received=1.0, started=1.5, decoded=1.502, segmented=1.51, done=1.511)
    values = frame.stats(times, MergeBudget(0.5, 1.0), dropped=7)
    assert set(values) | {"header"} == set(FrameStats.get_fields_and_field_types())
    msg = FrameStats(header=Header(frame_id="cam"), **values)
    assert msg.queue_ms == pytest.approx(500.0) and msg.latency_ms == pytest.approx(511.0)
    assert msg.preprocess_ms == pytest.approx(2.0 + frame.result.preprocess_ms, rel=1e-5)
    assert msg.postprocess_ms == pytest.approx(1.0 + frame.result.postprocess_ms, rel=1e-5)
    assert math.isnan(msg.stamp_age_ms) and msg.frames_dropped == 7
    assert (msg.merge_budget, msg.merge_bias) == (0.5, 1.0)
    assert msg.patch_tokens == msg.kept_tokens + msg.merged_tokens


def test_every_class_id_of_a_model_is_colored_even_255():
    """Frames colour model outputs: 255 is a class there (a 256-class model), not the dataset ignore id."""
    from clustvit_ros.data.palettes import default_palette

    palette = default_palette(256)
    labels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    frame = Frame(np.zeros((16, 16, 3), np.uint8), SimpleNamespace(labels=labels), palette)
    np.testing.assert_array_equal(frame.color, palette[labels])
