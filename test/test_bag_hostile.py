"""`clustvit bag` against hostile bags, arguments and signals: compressed chunks that inflate to
gigabytes, schemas that lie, stop signals mid-run. Each is refused or skipped within stated bounds,
with one line and never a traceback."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from types import SimpleNamespace

import lz4.frame
import mcap.writer
import pytest
import torch
from mcap.reader import make_reader
from mcap.writer import CompressionType
from mcap_ros2.writer import Writer
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from clustvit_ros.cli import main
from clustvit_ros.ros.bag import DEFAULT_MAX_CHUNK_MIB
from support.models import make_checkpoint
from test_bag import HEADER, IMAGE_DEF, SEP, SIZE, TIME, TOPIC, header, write_bag

MIB = 1 << 20


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("model") / "tiny.safetensors")


def _args(source, output, checkpoint, *extra) -> list[str]:
    return ["bag", str(source), str(output), "--topic", TOPIC, "--checkpoint", str(checkpoint), "--quiet",
            "--device", "cpu", *extra]


def run_bounded(argv: list[str], tmp_path, memory: int, timeout: float = 180):
    """`clustvit *argv` in a child process whose address space is capped at `memory` bytes (a safety
    net: the figure that matters is the peak RSS). Returns (exit code, stderr, peak RSS in bytes)."""
    peak = tmp_path / "peak_rss"
    code = (f"import resource, sys\nresource.setrlimit(resource.RLIMIT_AS, ({memory}, {memory}))\n"
            "from clustvit_ros.cli import main\n"
            "try:\n    code = main(sys.argv[1:])\nfinally:\n"
            f"    open({str(peak)!r}, 'w').write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024))\n"
            "sys.exit(code)\n")
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=timeout)
    return result.returncode, result.stderr, int(peak.read_text())


def _one_line(stderr: str) -> str:
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    return stderr.strip()


# Compressed chunks -------------------------------------------------------------------------------

def zstd_bomb(records: bytes, extra: int) -> bytes:
    """One zstd frame: the chunk's real `records`, then an unknown (skippable) record of `extra` zero
    bytes, stored as run-length blocks of 128 KiB in 4 bytes each. The frame declares its full size,
    so the mcap library allocates all of it at once."""
    payload = records + b"\x80" + extra.to_bytes(8, "little")
    frame = bytearray(b"\x28\xb5\x2f\xfd\xc0\x50")  # magic; 8-byte content size, 1 MiB window
    frame += (len(payload) + extra).to_bytes(8, "little")
    for start in range(0, len(payload), 1 << 17):  # raw blocks
        part = payload[start:start + (1 << 17)]
        frame += (len(part) << 3).to_bytes(3, "little") + part
    while extra:
        size = min(extra, 1 << 17)
        extra -= size
        frame += (size << 3 | 1 << 1 | int(extra == 0)).to_bytes(3, "little") + b"\x00"
    return bytes(frame)


def lz4_bomb(records: bytes, extra: int) -> bytes:
    """An lz4 frame of the chunk's real `records` and an unknown record of `extra` zero bytes."""
    compressor, zeros = lz4.frame.LZ4FrameCompressor(), bytes(MIB)
    parts = [compressor.begin(), compressor.compress(records + b"\x80" + extra.to_bytes(8, "little"))]
    parts += [compressor.compress(zeros) for _ in range(extra // MIB)]
    return b"".join(parts + [compressor.flush()])


def write_bomb_bag(path, compression: str, extra: int, monkeypatch) -> None:
    """A two-frame bag in one chunk, written by the mcap writer with its compressor swapped for a
    bomb: the chunk record and the chunk index state the records' true size, only the compressed
    frame inflates by `extra` bytes more."""
    if compression == "zstd":
        monkeypatch.setattr(mcap.writer, "zstandard", SimpleNamespace(compress=lambda d: zstd_bomb(d, extra)))
    else:
        monkeypatch.setattr(mcap.writer, "lz4", SimpleNamespace(frame=SimpleNamespace(
            compress=lambda d: lz4_bomb(d, extra))))
    with open(path, "wb") as f:
        writer = Writer(f, compression=CompressionType.ZSTD if compression == "zstd" else CompressionType.LZ4)
        schema = writer.register_msgdef("sensor_msgs/msg/Image", IMAGE_DEF)
        for i in range(2):
            writer.write_message(TOPIC, schema, {"header": header(i), "height": SIZE[0], "width": SIZE[1],
                                                 "encoding": "rgb8", "is_bigendian": 0, "step": SIZE[1] * 3,
                                                 "data": bytes(SIZE[0] * SIZE[1] * 3)}, log_time=i + 1)
        writer.finish()
    monkeypatch.undo()


@pytest.mark.parametrize("compression, extra", [("zstd", 8 << 30), ("lz4", (DEFAULT_MAX_CHUNK_MIB + 44) * MIB)])
def test_a_chunk_that_inflates_past_the_limit_ends_the_run_in_bounded_memory(tmp_path, checkpoint, monkeypatch,
                                                                              compression, extra):
    """zstd: 256 kB of bag declaring an 8 GiB chunk (the mcap library would allocate all of it); lz4:
    1.2 MB inflating to 300 MiB. Both stop at the default limit of 256 MiB inflated: the child, torch
    and the model included, peaks below 1 GiB of memory (address space capped at 3 GiB), within
    three minutes, with one line naming the limit's option; OUTPUT is not written."""
    source, output = tmp_path / "bomb.mcap", tmp_path / "out.mcap"
    write_bomb_bag(source, compression, extra, monkeypatch)
    assert source.stat().st_size < 2 * MIB
    code, stderr, peak = run_bounded(_args(source, output, checkpoint), tmp_path, memory=3 << 30)
    assert code == 2 and "--max-chunk-mib" in _one_line(stderr) and "inflates to more than" in stderr, stderr
    assert peak < 1 << 30, f"peak RSS {peak / MIB:.0f} MiB"
    assert not output.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bomb.mcap", "peak_rss"]


def test_a_chunk_within_a_raised_limit_is_read(tmp_path, checkpoint, monkeypatch, capsys):
    source, output = tmp_path / "bomb.mcap", tmp_path / "out.mcap"
    write_bomb_bag(source, "zstd", 20 * MIB, monkeypatch)
    assert main(_args(source, output, checkpoint, "--max-chunk-mib", "16")) == 2
    assert "above the limit of 16 MiB" in capsys.readouterr().err
    assert main(_args(source, output, checkpoint, "--max-chunk-mib", "32")) == 0
    with open(output, "rb") as f:
        counts = Counter(channel.topic for _, channel, _ in make_reader(f).iter_messages())
    assert counts[TOPIC] == 2 and counts[f"{TOPIC}/clustvit/mask"] == 2


def test_a_chunk_index_declaring_more_than_the_limit_is_refused_before_the_model_loads(tmp_path, capsys):
    """Frames of 480x640 rgb8 (900 kB) fill chunks of over 1 MiB; with --max-chunk-mib 1 the chunk
    index alone refuses the bag: the checkpoint, which does not exist, is never opened."""
    source = tmp_path / "big.mcap"
    with open(source, "wb") as f:
        writer = Writer(f)
        schema = writer.register_msgdef("sensor_msgs/msg/Image", IMAGE_DEF)
        for i in range(3):
            writer.write_message(TOPIC, schema, {"header": header(i), "height": 480, "width": 640, "encoding": "rgb8",
                                                 "is_bigendian": 0, "step": 1920, "data": bytes(480 * 1920)},
                                 log_time=i + 1)
        writer.finish()
    assert main(_args(source, tmp_path / "out.mcap", tmp_path / "missing.safetensors", "--max-chunk-mib", "1")) == 2
    assert re.search(r"the chunk at byte \d+ inflates to \d+ bytes, above the limit of 1 MiB", capsys.readouterr().err)


# Schemas that lie --------------------------------------------------------------------------------

LYING_SCHEMAS = {
    "a field missing": IMAGE_DEF.replace("string encoding\n", ""),
    "a field of another type": IMAGE_DEF.replace("uint32 height", "string height"),
    "data as a string": IMAGE_DEF.replace("uint8[] data", "string data"),
    "a recursive definition": f"std_msgs/Header header\nuint32 height\n{SEP}\nMSG: std_msgs/Header\n"
                              f"std_msgs/Header header\n{HEADER}{SEP}\nMSG: builtin_interfaces/Time\n{TIME}",
    "a header without its stamp": IMAGE_DEF.replace(f"MSG: std_msgs/Header\n{HEADER}",
                                                    "MSG: std_msgs/Header\nstring frame_id\n"),
    "a definition that does not parse": "%%% not a message definition",
}


@pytest.mark.parametrize("lie", LYING_SCHEMAS)
def test_messages_of_a_schema_that_lies_are_skipped_and_counted(tmp_path, checkpoint, capsys, lie):
    """The bag's images carry true sensor_msgs/Image bytes under a schema that says otherwise: each
    is skipped and counted, every message is still copied, and the run ends with exit code 1
    (nothing segmented) and its summary."""
    good = tmp_path / "good.mcap"
    write_bag(good, frames=3)
    source, output = tmp_path / "lying.mcap", tmp_path / "out.mcap"
    with open(good, "rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        messages = list(reader.iter_messages(log_time_order=False))
    with open(source, "wb") as f:
        writer = mcap.writer.Writer(f)
        writer.start(profile="ros2", library="test")
        for schema in summary.schemas.values():
            data = LYING_SCHEMAS[lie].encode() if schema.name == "sensor_msgs/msg/Image" else schema.data
            writer.register_schema(schema.name, schema.encoding, data)
        for channel in summary.channels.values():
            writer.register_channel(channel.topic, channel.message_encoding, channel.schema_id)
        for _, channel, message in messages:
            writer.add_message(channel.id, message.log_time, message.data, message.publish_time, message.sequence)
        writer.finish()
    assert main(_args(source, output, checkpoint)) == 1
    out = capsys.readouterr().out
    assert re.search(r"bad images skipped\s+3 \(first: log time \d+: ", out), out
    with open(output, "rb") as f:
        counts = Counter(channel.topic for _, channel, _ in make_reader(f).iter_messages())
    assert counts == {TOPIC: 3, "/chatter": 3}


# Arguments and files ------------------------------------------------------------------------------

@pytest.mark.parametrize("extra, reason", [
    (["--alpha", "nan"], "--alpha must lie in [0, 1]"),
    (["--alpha", "5"], "--alpha must lie in [0, 1]"),
    (["--input-size", "0", "0"], "--input-size must be H W with 1..8192 each"),
    (["--max-chunk-mib", "0"], "--max-chunk-mib must be positive"),
])
def test_out_of_range_arguments_are_one_line(tmp_path, checkpoint, capsys, extra, reason):
    source = tmp_path / "in.mcap"
    write_bag(source, frames=1)
    assert main(_args(source, tmp_path / "out.mcap", checkpoint, *extra)) == 2
    assert reason in _one_line(capsys.readouterr().err)


def _nested_yaml(path, depth: int = 5000):
    path.write_text("classes: " + "[" * depth + "]" * depth + "\n")
    return path


@pytest.mark.parametrize("labels, reason", [
    ("/dev/zero", "is not a regular file but a device"),
    ("fifo", "is not a regular file but a FIFO"),
    ("nested", "nests deeper than the YAML parser can follow"),
])
def test_a_labels_file_that_is_not_a_small_regular_yaml_file_is_one_line(tmp_path, checkpoint, labels, reason):
    """/dev/zero would be read until memory runs out and a FIFO without a writer would block forever:
    both are refused from fstat before a byte is read (the child's address space is capped at
    3 GiB and it has 2 minutes); a 5000-deep YAML list is refused for its depth."""
    source = tmp_path / "in.mcap"
    write_bag(source, frames=1)
    if labels == "fifo":
        os.mkfifo(labels := str(tmp_path / "labels.yaml"))
    elif labels == "nested":
        labels = str(_nested_yaml(tmp_path / "labels.yaml"))
    code, stderr, _ = run_bounded(_args(source, tmp_path / "out.mcap", checkpoint, "--labels-file", labels),
                                  tmp_path, memory=3 << 30, timeout=120)
    assert code == 2 and reason in _one_line(stderr), stderr


def int_checkpoint(good, path, dtype: torch.dtype):
    """`good`'s tensors in `dtype`, with the same names, shapes and metadata."""
    with safe_open(str(good), "pt") as f:
        meta = f.metadata()
    save_file({k: v.to(dtype) for k, v in load_file(str(good)).items()}, str(path), metadata=meta)
    return path


@pytest.mark.parametrize("dtype", [torch.int8, torch.bool])
def test_a_checkpoint_of_integer_tensors_is_one_line(tmp_path, checkpoint, capsys, dtype):
    source, bad = tmp_path / "in.mcap", int_checkpoint(checkpoint, tmp_path / "int.safetensors", dtype)
    write_bag(source, frames=1)
    assert main(_args(source, tmp_path / "out.mcap", bad)) == 2
    assert "not floating point" in _one_line(capsys.readouterr().err)


# Signals -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_stop_signal_mid_run_removes_the_partial_output(tmp_path, checkpoint, sig):
    """The signal arrives while the output is being written: the hidden partial file is removed, no
    OUTPUT appears, and the exit is one line with code 128 + the signal's number."""
    source, output = tmp_path / "in.mcap", tmp_path / "out.mcap"
    write_bag(source, frames=3000)
    proc = subprocess.Popen([sys.executable, "-m", "clustvit_ros.cli", *_args(source, output, checkpoint)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not any(p.name.endswith(".partial") for p in tmp_path.iterdir()):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.01)
        time.sleep(0.2)  # well into the frames
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig, stderr
    assert f"stopped by {signal.Signals(sig).name}" in _one_line(stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mcap"]
