"""The node against hostile inputs that cost time or grow without bound: a JPEG whose scans repeat, an
encoding string of megabytes, a labels file that is a device or a FIFO, a stamp before the epoch.
Real node process, real DDS on loopback."""
from __future__ import annotations

import os
import resource

import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image

from clustvit_ros.ros.image_codec import rgb8_to_compressed
from clustvit_ros.runtime.error_text import MAX_ERROR_CHARS
from support import processes
from support.models import make_checkpoint
from support.node_process import running_node, start_node, unique_namespace
from support.ros_harness import Harness, rgb_image
from test_image_codec import progressive_jpeg


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("model") / "tiny.safetensors")


def _count(h: Harness, key: str) -> int:
    return int(h.diagnostics_value(key) or 0)


def _send_until_counted(h: Harness, msg, stamp_sec: int, key: str = "input_errors") -> None:
    """Publish `msg` until /diagnostics counts it (the node's input is best effort)."""
    for attempt in range(10):
        h.publish(msg, (stamp_sec, attempt))
        try:
            h.wait_for(lambda: _count(h, key), 5, f"the message counted in {key}")
            return
        except AssertionError:
            continue
    raise AssertionError(f"not counted in {key} after 10 sends")


def test_a_jpeg_whose_scans_repeat_is_a_counted_input_error_and_decodes_nothing(checkpoint):
    """2000 copies of the last scan of a 640x480 progressive JPEG (26 kB; OpenCV takes about a second
    over its 2010 scans): refused from its markers as an input error, and the next frame is served."""
    bomb = CompressedImage(format="jpeg", data=progressive_jpeg(480, 640, repeats=2000))
    with running_node(f"checkpoint:={checkpoint}", "compressed:=true", "diagnostics_period:=0.2",
                      tag="scanbomb") as (proc, h):
        _send_until_counted(h, bomb, 900)
        assert "more than 32 scans" in h.diagnostics_value("last_error")
        good = rgb8_to_compressed(np.zeros((40, 60, 3), np.uint8))
        assert h.output_for("mask", (901, 0), republish=lambda: h.publish(good, (901, 0)))
        assert _count(h, "processing_errors") == 0 and proc.poll() is None


def test_a_megabyte_encoding_string_is_kept_and_logged_truncated(checkpoint):
    """A 5 MB encoding: /diagnostics keeps a last_error of at most MAX_ERROR_CHARS (plus the note of
    what was cut), its reason at the end intact, in every later message; the log line is as short."""
    huge = Image(height=1, width=1, encoding="x" * 5_000_000, step=3, data=bytes(3))
    with running_node(f"checkpoint:={checkpoint}", "diagnostics_period:=0.2", tag="longenc") as (proc, h):
        _send_until_counted(h, huge, 910)
        h.wait_for(lambda: len(h.messages("diagnostics")) > 3, 10, "more /diagnostics")
        last_errors = [kv.value for array in h.messages("diagnostics") for status in array.status
                       if status.name.startswith(h.fqn) for kv in status.values if kv.key == "last_error"]
        assert any("characters cut" in e and e.endswith("rgb8, bgr8, 8UC3, rgba8, bgra8, mono8, mono16, "
                                                        "yuv422, uyvy, yuv422_yuy2, yuyv") for e in last_errors)
        assert max(map(len, last_errors)) <= MAX_ERROR_CHARS + 50, max(map(len, last_errors))
        code, output = processes.stop(proc)
    assert code == 0 and "characters cut" in output
    assert max(map(len, output.splitlines())) < MAX_ERROR_CHARS + 200


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_labels_file_that_is_a_fifo_or_a_device_fails_configure_at_once(checkpoint, tmp_path, kind):
    """A FIFO nobody writes to would block the model load forever (the node then answered neither
    lifecycle requests nor signals), /dev/zero would be read until memory runs out: both are
    refused from fstat before a byte is read, so autostart fails with the reason and exit code 1
    within a minute (the node's address space capped at 4 GiB)."""
    labels = "/dev/zero"
    if kind == "fifo":
        os.mkfifo(labels := str(tmp_path / "labels.yaml"))
    proc = start_node(unique_namespace("labels"), f"checkpoint:={checkpoint}", f"labels_file:={labels}")
    resource.prlimit(proc.pid, resource.RLIMIT_AS, (4 << 30, 4 << 30))  # what /dev/zero could take, capped
    exited = processes.wait_exit(proc, 60)
    code, output = processes.stop(proc)
    assert exited, f"the node did not exit with labels_file at a {kind}:\n{output}"
    assert code == 1 and "is not a regular file" in output and labels in output, output


def test_a_stamp_with_negative_seconds_gets_its_frame_stats(checkpoint):
    """builtin_interfaces/Time holds negative seconds: such a frame is segmented and all its outputs,
    FrameStats included, carry its header; nothing is counted as an error."""
    with running_node(f"checkpoint:={checkpoint}", "diagnostics_period:=0.2", tag="negstamp") as (proc, h):
        stats = h.output_for("stats", (-5, 250), republish=lambda: h.publish(rgb_image(), (-5, 250)))
        assert h.output_for("mask", (-5, 250))
        assert stats.stamp_age_ms > 0 and stats.gflops > 0
        h.wait_for(lambda: h.diagnostics_value("frames_processed") not in (None, "0"), 10, "diagnostics")
        assert _count(h, "processing_errors") == 0 and _count(h, "input_errors") == 0
