"""`clustvit bag`: a small generated ROS 2 MCAP bag in, the same bag plus segmentation topics out."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter

import cv2
import numpy as np
import pytest
from mcap.reader import make_reader
from mcap.writer import Writer as McapWriter
from mcap_ros2.decoder import DecoderFactory
from mcap_ros2.writer import Writer

from clustvit_ros.cli import main
from support.models import make_checkpoint

# Schemas as rosbag2 writes them (written out here, independent of clustvit_ros.ros.msg_defs).
TIME = "int32 sec\nuint32 nanosec\n"
HEADER = "builtin_interfaces/Time stamp\nstring frame_id\n"
SEP = "=" * 80
IMAGE_DEF = (
    "std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\nuint8 is_bigendian\n"
    f"uint32 step\nuint8[] data\n{SEP}\nMSG: std_msgs/Header\n{HEADER}{SEP}\nMSG: builtin_interfaces/Time\n{TIME}")
COMPRESSED_DEF = (
    "std_msgs/Header header\nstring format\nuint8[] data\n"
    f"{SEP}\nMSG: std_msgs/Header\n{HEADER}{SEP}\nMSG: builtin_interfaces/Time\n{TIME}")
TOPIC = "/camera/image_raw"
SIZE = (48, 64)  # H, W


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("model") / "tiny.safetensors")


def header(i: int) -> dict:
    return {"stamp": {"sec": 1_700_000_000 + i, "nanosec": 1000 * i}, "frame_id": "camera_optical_frame"}


def write_bag(path, compressed: bool = False, frames: int = 4, bad_frame: bool = False):
    rng = np.random.default_rng(0)
    with open(path, "wb") as f:
        writer = Writer(f)
        image_schema = writer.register_msgdef(
            "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image",
            COMPRESSED_DEF if compressed else IMAGE_DEF)
        string_schema = writer.register_msgdef("std_msgs/msg/String", "string data\n")
        for i in range(frames):
            rgb = rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8)
            if compressed:
                msg = {"header": header(i), "format": "jpeg",
                       "data": cv2.imencode(".jpg", rgb[..., ::-1])[1].tobytes()}
            else:
                msg = {"header": header(i), "height": SIZE[0], "width": SIZE[1], "encoding": "rgb8",
                       "is_bigendian": 0, "step": SIZE[1] * 3, "data": rgb.tobytes()}
            writer.write_message(TOPIC + ("/compressed" if compressed else ""), image_schema, msg,
                                 log_time=5_000_000_000 + i * 100_000_000, publish_time=4_000_000_000 + i)
            writer.write_message("/chatter", string_schema, {"data": f"hello {i}"},
                                 log_time=5_000_000_000 + i * 100_000_000 + 1)
        if bad_frame:  # data shorter than step * height: skipped and counted, never fatal
            bad = {"header": header(99), "height": SIZE[0], "width": SIZE[1], "encoding": "rgb8",
                   "is_bigendian": 0, "step": SIZE[1] * 3, "data": b"\x00" * 10}
            writer.write_message(TOPIC, image_schema, bad, log_time=9_000_000_000)
        writer.finish()


def read_bag(path) -> tuple[dict, dict]:
    """{topic: [(log_time, publish_time, decoded, raw bytes)]}, {topic: schema name}."""
    topics, schemas = {}, {}
    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        for schema, channel, message, decoded in reader.iter_decoded_messages():
            topics.setdefault(channel.topic, []).append(
                (message.log_time, message.publish_time, decoded, message.data))
            schemas[channel.topic] = schema.name
    return topics, schemas


def test_round_trip(tmp_path, checkpoint, capsys):
    source, output = tmp_path / "in.mcap", tmp_path / "out.mcap"
    write_bag(source, bad_frame=True)
    code = main(["bag", str(source), str(output), "--topic", TOPIC, "--checkpoint", str(checkpoint),
                 "--budget", "0.5", "--bias", "1.0", "--device", "cpu", "--quiet"])
    assert code == 0
    summary = capsys.readouterr().out
    assert "frames segmented" in summary and "4 in" in summary and "bad images skipped" in summary

    original, _ = read_bag(source)
    topics, schemas = read_bag(output)
    prefix = f"{TOPIC}/clustvit"
    assert set(topics) == {TOPIC, "/chatter", f"{prefix}/mask", f"{prefix}/mask_color",
                           f"{prefix}/overlay", f"{prefix}/stats"}
    assert schemas[f"{prefix}/mask"] == schemas[f"{prefix}/overlay"] == "sensor_msgs/msg/Image"
    assert schemas[f"{prefix}/stats"] == "clustvit_ros/msg/FrameStats"
    for topic in (TOPIC, "/chatter"):  # originals unchanged: bytes, log and publish times
        assert [(a, b, d) for a, b, _, d in topics[topic]] == [(a, b, d) for a, b, _, d in original[topic]]
    inputs = topics[TOPIC][:4]
    for name in ("mask", "mask_color", "overlay", "stats"):
        outputs = topics[f"{prefix}/{name}"]
        assert len(outputs) == 4  # the bad frame produced nothing
        for (log_time, publish_time, msg, _), (in_log, in_publish, image, _) in zip(outputs, inputs):
            assert (log_time, publish_time) == (in_log, in_publish)
            assert msg.header.stamp.sec == image.header.stamp.sec
            assert msg.header.stamp.nanosec == image.header.stamp.nanosec
            assert msg.header.frame_id == "camera_optical_frame"
            if name != "stats":
                channels = 1 if name == "mask" else 3
                assert (msg.height, msg.width, msg.step) == (*SIZE, SIZE[1] * channels)
                assert msg.encoding == ("mono8" if name == "mask" else "rgb8")
                assert len(msg.data) == SIZE[0] * SIZE[1] * channels
    for _, _, stats, _ in topics[f"{prefix}/stats"]:
        assert stats.gflops > 0 and stats.dense_gflops >= stats.gflops
        assert stats.merge_budget == 0.5 and stats.merge_bias == 1.0
        assert stats.patch_tokens == stats.kept_tokens + stats.merged_tokens > 0
        assert stats.merged_tokens <= 0.5 * stats.patch_tokens
        assert stats.latency_ms > 0 and np.isnan(stats.stamp_age_ms)
    mask = np.frombuffer(topics[f"{prefix}/mask"][0][2].data, np.uint8)
    assert mask.max() < 4  # class ids of the 4-class test model


def test_compressed_input_prefix_and_skipped_outputs(tmp_path, checkpoint):
    source, output = tmp_path / "in.mcap", tmp_path / "out.mcap"
    write_bag(source, compressed=True, frames=2)
    assert main(["bag", str(source), str(output), "--topic", TOPIC + "/compressed", "--checkpoint",
                 str(checkpoint), "--prefix", "/seg/", "--no-overlay", "--no-mask-color", "--quiet"]) == 0
    topics, _ = read_bag(output)
    assert set(topics) == {TOPIC + "/compressed", "/chatter", "/seg/mask", "/seg/stats"}
    assert (topics["/seg/mask"][0][2].height, topics["/seg/mask"][0][2].width) == SIZE


def test_errors_name_the_problem(tmp_path, checkpoint, capsys):
    source, output = tmp_path / "in.mcap", tmp_path / "out.mcap"
    write_bag(source, frames=1)
    assert main(["bag", str(source), str(output), "--topic", "/nope", "--checkpoint", str(checkpoint)]) == 2
    assert f"no image topic '/nope'; its image topics: {TOPIC}" in capsys.readouterr().err
    output.write_bytes(b"")
    assert main(["bag", str(source), str(output), "--topic", TOPIC]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert main(["bag", str(source), str(output), "--topic", TOPIC, "--force", "--quiet",
                 "--checkpoint", str(checkpoint)]) == 0
    assert main(["bag", str(output), str(tmp_path / "again.mcap"), "--topic", TOPIC]) == 2
    assert "already has /camera/image_raw/clustvit/mask" in capsys.readouterr().err
    (tmp_path / "junk.mcap").write_bytes(b"not a bag")
    assert main(["bag", str(tmp_path / "junk.mcap"), str(tmp_path / "o2.mcap"), "--topic", TOPIC]) == 2
    assert "not a readable MCAP file" in capsys.readouterr().err


def test_the_command_line_loads_the_bag_module_lazily():
    code = ("import sys, clustvit_ros.ros.bag as bag, argparse; "
            "p = argparse.ArgumentParser().add_subparsers(); bag.add_parser(p); "
            "heavy = {'rclpy', 'mcap', 'mcap_ros2', 'torch', 'sensor_msgs'} & set(sys.modules); "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# Hostile inputs and outputs -----------------------------------------------------------------------

def _bag_args(source, output, checkpoint, *extra):
    return ["bag", str(source), str(output), "--topic", TOPIC, "--checkpoint", str(checkpoint), "--quiet",
            "--device", "cpu", *extra]


def test_a_corrupt_message_is_skipped_and_counted_and_the_output_is_complete(tmp_path, checkpoint, capsys):
    source, output = tmp_path / "in.mcap", tmp_path / "out.mcap"
    write_bag(source, frames=3)
    with open(source, "rb") as f:  # the same bag with one image's CDR bytes cut short
        reader = make_reader(f)
        summary = reader.get_summary()
        messages = list(reader.iter_messages(log_time_order=True))
    corrupt = tmp_path / "corrupt.mcap"
    with open(corrupt, "wb") as f:
        writer = McapWriter(f)
        writer.start(profile="ros2", library="test")
        for schema in summary.schemas.values():
            writer.register_schema(schema.name, schema.encoding, schema.data)
        for channel in summary.channels.values():
            writer.register_channel(channel.topic, channel.message_encoding, channel.schema_id)
        images = 0
        for _, channel, message in messages:
            data = message.data
            if channel.topic == TOPIC and (images := images + 1) == 2:
                data = data[:7]
            writer.add_message(channel.id, message.log_time, data, message.publish_time, message.sequence)
        writer.finish()
    assert main(_bag_args(corrupt, output, checkpoint)) == 0
    out = capsys.readouterr().out
    assert re.search(r"bad images skipped\s+1 \(first: log time \d+: corrupt message", out), out
    with open(output, "rb") as f:  # readable and complete: every original plus two segmented frames
        counts = Counter(channel.topic for _, channel, _ in make_reader(f).iter_messages())
    assert counts[TOPIC] == 3 and counts["/chatter"] == 3 and counts[f"{TOPIC}/clustvit/mask"] == 2


def test_an_output_hard_linked_to_the_input_is_refused_and_the_input_stays(tmp_path, checkpoint, capsys):
    source = tmp_path / "in.mcap"
    write_bag(source, frames=1)
    before = source.read_bytes()
    os.link(source, tmp_path / "link.mcap")
    assert main(_bag_args(source, tmp_path / "link.mcap", checkpoint, "--force")) == 2
    assert "same file" in capsys.readouterr().err
    assert source.read_bytes() == before


@pytest.mark.parametrize("kind", ["directory", "device"])
def test_an_output_that_is_not_a_regular_file_is_one_clear_error(tmp_path, checkpoint, kind):
    source = tmp_path / "in.mcap"
    write_bag(source, frames=1)
    target = tmp_path if kind == "directory" else "/dev/full"
    result = subprocess.run([sys.executable, "-m", "clustvit_ros.cli", *_bag_args(source, target, checkpoint, "--force")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "not a regular file" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_force_keeps_the_previous_output_until_the_new_one_is_complete(tmp_path, checkpoint):
    """The new output cannot be written (a file size limit of half its size, like a full disk): the
    previous output is untouched, no temporary file is left, and the error is one line."""
    source, output = tmp_path / "in.mcap", tmp_path / "out.mcap"
    write_bag(source, frames=3)
    assert main(_bag_args(source, output, checkpoint)) == 0
    previous = output.read_bytes()
    limit = len(previous) // 2
    code = (f"import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
            "from clustvit_ros.cli import main; sys.exit(main(sys.argv[1:]))")
    result = subprocess.run([sys.executable, "-c", code, *_bag_args(source, output, checkpoint, "--force")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "cannot write" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert output.read_bytes() == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mcap", "out.mcap"]


def test_a_png_bomb_in_a_bag_is_a_skipped_image(tmp_path, checkpoint, capsys):
    from test_hardening import _png_bomb

    source, output = tmp_path / "in.mcap", tmp_path / "out.mcap"
    with open(source, "wb") as f:
        writer = Writer(f)
        schema = writer.register_msgdef("sensor_msgs/msg/CompressedImage", COMPRESSED_DEF)
        writer.write_message(TOPIC, schema, {"header": header(0), "format": "png", "data": _png_bomb(5792)},
                             log_time=1)
        writer.finish()
    assert main(_bag_args(source, output, checkpoint)) == 1  # nothing segmented
    out = capsys.readouterr().out
    assert re.search(r"bad images skipped\s+1 \(first: .*exceeds max_pixels", out), out
