"""Hardening: fuzzed images and parameters, faults and shutdown mid-inference never break the node."""
from __future__ import annotations

import json
import math
import signal
import threading
import time

import numpy as np
import pytest
import rclpy
import torch
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from safetensors.torch import load_file, save_file
from sensor_msgs.msg import CompressedImage, Image

from clustvit_ros.ros.image_codec import ImageDecodeError, compressed_to_rgb8, rgb8_to_compressed, to_rgb8
from clustvit_ros.ros.params import PARAMETERS
from support import processes
from support.models import make_checkpoint
from support.node_process import running_node, start_node, unique_namespace
from support.ros_harness import Harness, rgb_image

ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "yuv422", "yuv422_yuy2", "32FC1",
             "16SC1", "rgb16", "8UC3", "jpeg", "", "RGB8", "rgb8\x00")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("model") / "tiny.safetensors")


def _malformed_images(rng: np.random.Generator, count: int):
    """`count` Image messages that the codec rejects, of every kind of damage."""
    made = 0
    while made < count:
        msg = Image(encoding=str(rng.choice(ENCODINGS)), is_bigendian=int(rng.integers(0, 2)))
        msg.height, msg.width = (int(v) for v in rng.integers(0, 40, 2))
        if rng.random() < 0.05:
            msg.height, msg.width = 200_000, 200_000  # huge
        bpp = int(rng.choice([1, 2, 3, 4]))
        msg.step = max(0, msg.width * bpp + int(rng.integers(-3, 4)))
        size = min(1 << 16, max(0, msg.step * msg.height + int(rng.choice([-msg.step, -1, 0, 1, 17]))))
        if msg.encoding == "32FC1" and rng.random() < 0.5:
            data = np.full(size // 4 + 1, np.nan, np.float32).tobytes()[:size]
        else:
            data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        msg.data = data
        try:
            to_rgb8(msg)
        except ImageDecodeError:
            made += 1
            yield msg


def _malformed_compressed(rng: np.random.Generator, count: int):
    jpeg = bytes(rgb8_to_compressed(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8), "jpeg").data)
    png = bytes(rgb8_to_compressed(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8), "png").data)
    made = 0
    while made < count:
        source = jpeg if rng.random() < 0.5 else png
        kind = rng.integers(0, 4)
        if kind == 0:
            data = source[: int(rng.integers(0, len(source)))]
        elif kind == 1:
            data = bytearray(source)
            for i in rng.integers(0, len(data), 8):
                data[i] = int(rng.integers(0, 256))
            data = bytes(data)
        elif kind == 2:
            data = rng.integers(0, 256, int(rng.integers(0, 300)), dtype=np.uint8).tobytes()
        else:
            data = source[:2] + rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
        msg = CompressedImage(format=str(rng.choice(["jpeg", "png", "bmp", ""])), data=data)
        try:
            compressed_to_rgb8(msg)
        except ImageDecodeError:
            made += 1
            yield msg


def _diag_int(h: Harness, key: str) -> int:
    return int(h.diagnostics_value(key) or 0)


FUZZ_BURST = 10  # malformed images sent before waiting for the node to account for them


@pytest.mark.parametrize("kind, count", [("raw", 800), ("compressed", 400)])
def test_fuzzed_images_are_each_counted_and_the_node_keeps_working(checkpoint, kind, count):
    compressed = kind == "compressed"
    with running_node(f"checkpoint:={checkpoint}", f"compressed:={str(compressed).lower()}",
                      "qos_reliability:=reliable", "qos_depth:=100", "diagnostics_period:=0.2",
                      tag=f"fuzz{kind}", publisher_depth=count) as (proc, h):
        rng = np.random.default_rng(1234)
        messages = (_malformed_compressed if compressed else _malformed_images)(rng, count)
        # Reliable with deep queues on both sides: every message reaches the node, and each one is either counted
        # as an input error or as replaced in the newest-frame slot before it was looked at.
        accounted = lambda: _diag_int(h, "input_errors") + _diag_int(h, "frames_dropped")  # noqa: E731
        figures = lambda: {k: _diag_int(h, k) for k in  # noqa: E731
                           ("frames_received", "input_errors", "frames_dropped", "processing_errors")}
        for i, msg in enumerate(messages, 1):
            h.publish(msg, (100, i))
            time.sleep(0.002)
            if i % FUZZ_BURST == 0:  # paced by the node, not the clock: a loaded CPU drops no more
                h.wait_for(lambda: accounted() >= i, 60)
        try:
            h.wait_for(lambda: _diag_int(h, "frames_received") == count and accounted() == count, 60)
        except AssertionError:
            raise AssertionError(f"{count} malformed images sent, /diagnostics says {figures()}") from None
        assert _diag_int(h, "input_errors") >= 0.8 * count
        assert _diag_int(h, "processing_errors") == 0 and proc.poll() is None
        good = rgb8_to_compressed(np.zeros((40, 60, 3), np.uint8)) if compressed else rgb_image(40, 60)
        mask = h.output_for("mask", (200, 0), republish=lambda: h.publish(good, (200, 0)))
        assert (mask.height, mask.width) == (40, 60)


def _expected_accept(spec, value) -> bool:
    """Independent statement of what the node must accept for a live parameter."""
    if not spec.live or type(value) is not type(spec.default):
        return False
    if isinstance(value, float):
        return math.isfinite(value) and spec.range[0] <= value <= spec.range[1]
    return True


def _random_value(rng: np.random.Generator):
    choice = rng.integers(0, 9)
    return [lambda: bool(rng.integers(0, 2)), lambda: int(rng.integers(-5, 5)),
            lambda: float(rng.uniform(-2, 2)), lambda: float(rng.uniform(-30, 30)),
            lambda: float(rng.choice([math.nan, math.inf, -math.inf])), lambda: "0.5",
            lambda: str(rng.choice(["cpu", "cuda:3", "fp16", "", "fixed"])),
            lambda: [int(v) for v in rng.integers(0, 600, int(rng.integers(0, 4)))],
            lambda: [float(v) for v in rng.uniform(0, 1, 2)]][choice]()


def test_fuzzed_parameters_are_rejected_with_a_reason_and_change_nothing(checkpoint):
    with running_node(f"checkpoint:={checkpoint}", tag="pfuzz") as (proc, h):
        names = [spec.name for spec in PARAMETERS]
        state = dict(zip(names, h.get(*names)))
        rng = np.random.default_rng(99)
        for _ in range(150):
            spec = PARAMETERS[int(rng.integers(0, len(PARAMETERS)))]
            value = _random_value(rng)
            (result,) = h.set(**{spec.name: value})
            expected = _expected_accept(spec, value)
            assert result.successful == expected, (spec.name, value, result.reason)
            if expected:
                state[spec.name] = value
            else:
                assert result.reason, (spec.name, value)
        assert dict(zip(names, h.get(*names))) == state
        h.set(enabled=True, merge_budget=1.0, merge_bias=0.0)
        assert h.output_for("mask", (300, 0), republish=lambda: h.publish(rgb_image(), (300, 0)))
        assert proc.poll() is None


def _broken_checkpoints(good, tmp_path) -> dict:
    tensors = load_file(str(good))
    from safetensors import safe_open

    with safe_open(str(good), "pt") as f:
        meta = f.metadata()
    wrong_shape = dict(tensors)
    name = next(k for k in tensors if k.endswith("weight") and tensors[k].ndim == 2)
    wrong_shape[name] = torch.zeros(tensors[name].shape[0] + 1, tensors[name].shape[1])
    config = json.loads(meta["config"])
    config["palette"] = config["palette"][:-1]  # 3 colours for 4 classes
    files = {"wrong_shape": (wrong_shape, meta), "palette_mismatch": (tensors, {**meta, "config": json.dumps(config)})}
    out = {}
    for label, (t, m) in files.items():
        path = tmp_path / f"{label}.safetensors"
        save_file(t, str(path), metadata=m)
        out[label] = path
    return out


@pytest.mark.parametrize("label, reason", [("wrong_shape", "shape"), ("palette_mismatch", "palette")])
def test_inconsistent_checkpoint_stops_the_node_with_the_reason(checkpoint, tmp_path, label, reason):
    path = _broken_checkpoints(checkpoint, tmp_path)[label]
    proc = start_node(unique_namespace("fault"), f"checkpoint:={path}")
    assert processes.wait_exit(proc, 60), "the node kept running with an inconsistent model"
    code, output = processes.stop(proc)
    assert code != 0 and str(path) in output and reason in output, output


def test_cuda_requested_without_a_gpu_runs_on_the_cpu_with_one_warning(checkpoint):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with running_node(f"checkpoint:={checkpoint}", "device:=cuda:0", "diagnostics_period:=0.2",
                      tag="nocuda") as (proc, h):
        assert h.output_for("mask", (400, 0), republish=lambda: h.publish(rgb_image(), (400, 0)))
        h.wait_for(lambda: h.diagnostics_value("device") == "cpu", 10, "diagnostics on cpu")
        code, output = processes.stop(proc)
    assert code == 0 and output.count("running on the CPU") == 1, output


def test_out_of_memory_during_inference_skips_the_frame_and_recovers(checkpoint):
    from clustvit_ros.ros.node import ClustViTNode

    context = Context()
    rclpy.init(context=context)
    node = ClustViTNode(context=context, namespace=unique_namespace("oom"),
                        parameter_overrides=[Parameter("checkpoint", value=str(checkpoint)),
                                             Parameter("diagnostics_period", value=0.2)])
    assert node.start()  # configure and activate, as autostart does in main()
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    h = Harness(context, node.get_fully_qualified_name())
    real_run, calls = node.engine.run, []

    def failing_run(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_run(*args, **kwargs)

    node.engine.run = failing_run
    try:
        h.wait_ready()
        h.publish(rgb_image(), (500, 0))
        h.wait_for(lambda: _diag_int(h, "processing_errors") == 1, 15, "the OOM counted")
        assert "out of memory" in h.diagnostics_value("last_error")
        assert h.output_for("mask", (501, 0), republish=lambda: h.publish(rgb_image(), (501, 0)))
    finally:
        h.close()
        node.close()
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_in_the_middle_of_inference_exits_cleanly(tmp_path, sig):
    slow = make_checkpoint(tmp_path / "slow.safetensors", embed_dim=192, depth=6, num_heads=3,
                           mlp_hidden=768, cluster_hidden=192)
    with running_node(f"checkpoint:={slow}", "input_size:=[512,512]", "merge_budget:=0.0",
                      tag="midinf") as (proc, h):
        image = rgb_image(240, 320)
        h.output_for("stats", (600, 0), republish=lambda: h.publish(image, (600, 0)))
        for i in range(20):  # keep the worker busy: a frame is in flight when the signal lands
            h.publish(image, (601, i))
            time.sleep(0.01)
        code, output = processes.stop(proc, sig)
    assert code == 0, output
    assert "Traceback" not in output


def _diagnostics_levels(h: Harness) -> list[tuple[int, str]]:
    """(level, input_errors) of every /diagnostics status of the node received so far, in order."""
    return [(int.from_bytes(status.level, "little"),
             next((kv.value for kv in status.values if kv.key == "input_errors"), ""))
            for array in h.messages("diagnostics") for status in array.status if status.name.startswith(h.fqn)]


def test_diagnostics_warn_for_the_period_of_a_bad_frame_then_return_to_ok(checkpoint):
    from diagnostic_msgs.msg import DiagnosticStatus

    warn, ok = (int.from_bytes(v, "little") for v in (DiagnosticStatus.WARN, DiagnosticStatus.OK))
    with running_node(f"checkpoint:={checkpoint}", "diagnostics_period:=0.2", tag="diaglevel") as (proc, h):
        truncated = Image(height=8, width=8, encoding="rgb8", step=24, data=bytes(100))
        for attempt in range(10):  # best-effort input: send again until one arrives
            h.publish(truncated, (700, attempt))
            try:
                h.wait_for(lambda: any(level == warn for level, _ in _diagnostics_levels(h)), 3)
                break
            except AssertionError:
                continue
        else:
            raise AssertionError(f"no WARN status for a bad frame: {_diagnostics_levels(h)}")
        h.output_for("mask", (701, 0), republish=lambda: h.publish(rgb_image(), (701, 0)))

        def ok_after_the_last_warn():
            levels = _diagnostics_levels(h)
            last_warn = max(i for i, (level, _) in enumerate(levels) if level == warn)
            return any(level == ok and int(errors) >= 1 for level, errors in levels[last_warn:])

        h.wait_for(ok_after_the_last_warn, 15, "an OK status once a period passed without bad frames, "
                                                "the bad frames still counted")
        assert proc.poll() is None


# Hostile inputs -----------------------------------------------------------------------------------

def test_keep_aspect_strip_is_refused_before_a_model_input_is_made(checkpoint, monkeypatch):
    """16x100000 with keep_aspect would be a 64x400000 model input (25.6 MP): refused, nothing allocated."""
    from clustvit_ros.runtime.engine import Engine

    engine = Engine(checkpoint, device="cpu", resize="keep_aspect")
    monkeypatch.setattr(engine, "_preprocess", lambda *a: pytest.fail("a model input was made"))
    with pytest.raises(ValueError, match=r"model input 64x400000 .* exceeds"):
        engine.run(np.zeros((16, 100_000, 3), np.uint8))


def test_a_strip_whose_model_input_is_too_narrow_is_a_counted_input_error(checkpoint):
    """16x5000: 1.3 MP as a model input, but 312:1. The node counts it and keeps segmenting."""
    with running_node(f"checkpoint:={checkpoint}", "resize:=keep_aspect", "diagnostics_period:=0.2",
                      tag="strip") as (proc, h):
        for attempt in range(10):  # best-effort input: send again until one arrives
            h.publish(rgb_image(16, 5000), (800, attempt))
            try:
                h.wait_for(lambda: _diag_int(h, "input_errors"), 3, "the strip counted as an input error")
                break
            except AssertionError:
                continue
        else:
            raise AssertionError("no strip counted as an input error in 10 sends")
        assert "aspect" in h.diagnostics_value("last_error")
        assert h.output_for("mask", (801, 0), republish=lambda: h.publish(rgb_image(), (801, 0)))
        assert _diag_int(h, "processing_errors") == 0 and proc.poll() is None


def _png_bomb(side: int) -> bytes:
    """A PNG declaring side x side RGB pixels, all black: a few hundred bytes per megapixel."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = zlib.compressobj(9)
    idat = b"".join(rows.compress(b"\x00" * (1 + 3 * side)) for _ in range(side)) + rows.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_an_8k_frame_is_refused_at_the_default_max_image_pixels():
    default = next(s.default for s in PARAMETERS if s.name == "max_image_pixels")
    frame = Image(height=4320, width=7680, encoding="rgb8", step=7680 * 3)  # header only: no 100 MB
    with pytest.raises(ImageDecodeError, match="exceeds max_pixels"):
        to_rgb8(frame, default)
    assert default >= 4056 * 3040  # a 12 MP robot camera (OAK, Jetson IMX477) still fits


def test_a_png_decompression_bomb_is_refused_from_its_header_before_decoding(monkeypatch):
    """5792x5792 (33.5 MP, ~100 kB of PNG) at the node's default max_image_pixels."""
    import cv2

    default = next(s.default for s in PARAMETERS if s.name == "max_image_pixels")
    monkeypatch.setattr(cv2, "imdecode", lambda *a: pytest.fail("the bomb was decoded"))
    bomb = CompressedImage(format="png", data=_png_bomb(5792))
    with pytest.raises(ImageDecodeError, match="5792x5792 .* exceeds max_pixels"):
        compressed_to_rgb8(bomb, default)


def _with_config(good, path, **changes):
    """`good`'s tensors under a config that claims `changes` (what a hostile checkpoint does)."""
    from safetensors import safe_open

    with safe_open(str(good), "pt") as f:
        meta = f.metadata()
    config = {**json.loads(meta["config"]), **changes}
    save_file(load_file(str(good)), str(path), metadata={**meta, "config": json.dumps(config)})
    return path


def _no_real_model(monkeypatch, module):
    """Fail the test if `module` builds a ClustViT anywhere but on the meta device (shapes only)."""
    real = module.ClustViT

    def build(config):
        if torch.empty(0).device.type != "meta":
            pytest.fail(f"a model was built from an unchecked claim (depth {config.depth}, "
                        f"{config.num_classes} classes)")
        return real(config)

    monkeypatch.setattr(module, "ClustViT", build)


def test_a_checkpoint_claiming_200000_blocks_is_refused_before_anything_is_built(checkpoint, tmp_path,
                                                                                 monkeypatch):
    from clustvit_ros.model import checkpoints

    bomb = _with_config(checkpoint, tmp_path / "depth.safetensors", depth=200_000)
    monkeypatch.setattr(checkpoints, "ClustViT", lambda config: pytest.fail("a model was built"))
    with pytest.raises(checkpoints.CheckpointError, match=r"depth.safetensors.*depth 200000 exceeds"):
        checkpoints.load_checkpoint(bomb)


def test_a_checkpoint_claiming_2e7_classes_stops_node_and_eval_with_the_reason(checkpoint, tmp_path, capsys):
    from clustvit_ros.cli import main

    bomb = _with_config(checkpoint, tmp_path / "classes.safetensors", num_classes=20_000_000,
                        class_names=[], palette=[])
    assert main(["eval", "--checkpoint", str(bomb), "--device", "cpu"]) == 2
    assert "num_classes 20000000 exceeds 256" in capsys.readouterr().err
    proc = start_node(unique_namespace("classes"), f"checkpoint:={bomb}")
    assert processes.wait_exit(proc, 60), "the node kept running"
    code, output = processes.stop(proc)
    assert code != 0 and "num_classes 20000000 exceeds 256" in output, output


def test_a_checkpoint_whose_tensors_do_not_fill_its_config_is_refused_before_they_are_read(
        checkpoint, tmp_path, monkeypatch):
    """Within every bound, but 40 blocks claimed for 4 stored: the header says so, nothing is read."""
    from safetensors import safe_open

    from clustvit_ros.model import checkpoints

    liar = _with_config(checkpoint, tmp_path / "liar.safetensors", depth=40)
    _no_real_model(monkeypatch, checkpoints)
    reads = []
    monkeypatch.setattr(checkpoints, "safe_open", lambda *a, **k: reads.append(1) or safe_open(*a, **k))
    with pytest.raises(checkpoints.CheckpointError, match=r"liar.safetensors.*missing keys.*encoder.blocks.39"):
        checkpoints.load_checkpoint(liar)
    assert len(reads) == 1, "the tensors were read although the header already disagreed"


def _timm_with_empty_tensors(path, dim: int):
    """A timm ViT state dict whose tensors are all empty but claim width `dim` (a few kB on disk)."""
    sd = {"cls_token": torch.zeros(0, 1, dim), "pos_embed": torch.zeros(0, 1 + 14 * 14, dim),
          "patch_embed.proj.weight": torch.zeros(0, 3, 16, 16), "norm.weight": torch.zeros(0),
          "norm.bias": torch.zeros(0), "blocks.0.attn.qkv.weight": torch.zeros(0, dim),
          "blocks.0.mlp.fc1.weight": torch.zeros(4 * dim, 0)}
    torch.save(sd, path)
    return path


@pytest.mark.parametrize("dim, extra", [(64, ["--img-size", "256"]), (4096, [])])
def test_convert_of_empty_tensors_is_one_clear_error_and_builds_nothing(tmp_path, monkeypatch, capsys, dim, extra):
    """(64: the position-embedding resize crashed with a traceback; 4096: 2.3 GB allocated first.)"""
    from clustvit_ros.cli import main
    from clustvit_ros.model import importers

    src = _timm_with_empty_tensors(tmp_path / "empty.pth", dim)
    _no_real_model(monkeypatch, importers)
    code = main(["convert", str(src), str(tmp_path / "out.safetensors"), "--from", "timm", "--num-classes", "3",
                 "--num-heads", "16", "--head", "linear", "--ip", "0", *extra])
    err = capsys.readouterr().err
    assert code == 2 and "empty.pth" in err and "cls_token" in err and "no elements" in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out.safetensors").exists()


def test_a_compressed_pth_is_refused_before_it_is_inflated(tmp_path):
    """A zip entry may be deflated: 5 kB that would become a 4 MB tensor (or 10 MB -> 10 GB)."""
    import io
    import zipfile

    from clustvit_ros.model.importers import CheckpointError, read_weights

    plain = io.BytesIO()
    torch.save({"blocks.0.attn.qkv.weight": torch.zeros(1000, 1000)}, plain)
    with zipfile.ZipFile(io.BytesIO(plain.getvalue())) as zin, \
            zipfile.ZipFile(tmp_path / "bomb.pth", "w", zipfile.ZIP_DEFLATED) as zout:
        for name in zin.namelist():
            zout.writestr(name, zin.read(name))
    assert (tmp_path / "bomb.pth").stat().st_size < 100_000
    with pytest.raises(CheckpointError, match="bomb.pth.*compressed"):
        read_weights(tmp_path / "bomb.pth")
