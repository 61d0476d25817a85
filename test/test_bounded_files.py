"""Files a user names (labels, recipes, data sets, checkpoints) are read within bounds: never from a
FIFO or device, never past a size limit, never decoded past a pixel limit, and every refusal is one
line from the command line (exit code 2), never a traceback. Starts no DDS."""
from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib

import cv2
import numpy as np
import pytest
import torch
import yaml

from clustvit_ros.cli import main
from clustvit_ros.data.datasets import read_rgb, write_classes_file
from clustvit_ros.data.files import YAML_LIMIT, InputFileError, read_text, read_yaml
from clustvit_ros.data.image_bytes import DEFAULT_MAX_PIXELS, ImageDecodeError
from clustvit_ros.data.palettes import LabelsError, read_labels_file
from clustvit_ros.model.checkpoints import CheckpointError, load_checkpoint
from clustvit_ros.runtime.error_text import MAX_ERROR_CHARS, error_text
from clustvit_ros.train.config import load_config
from support.models import CLASSES, make_checkpoint
from test_bag_hostile import int_checkpoint, run_bounded
from test_train_loop import TINY

GIB = 1 << 30


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("model") / "tiny.safetensors")


def _one_line(err: str) -> str:
    """The error line of a command's stderr, which holds nothing else but progress bars."""
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip() and "img/s]" not in line]
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0].strip()


# The bounded reader ------------------------------------------------------------------------------

def test_labels_at_dev_zero_or_a_fifo_are_refused_before_a_byte_is_read(tmp_path):
    """In a child capped at 2 GiB of address space and 30 s: a plain read of /dev/zero runs until
    memory runs out, of a FIFO without a writer blocks forever."""
    os.mkfifo(fifo := tmp_path / "labels.yaml")
    code = ("import sys\nimport resource\nresource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))\n"
            "from clustvit_ros.data.palettes import LabelsError, read_labels_file\n"
            "for path in sys.argv[1:]:\n"
            "    try:\n        read_labels_file(path, 4)\n"
            "    except LabelsError as exc:\n        print(exc)\n")
    result = subprocess.run([sys.executable, "-c", code, "/dev/zero", str(fifo)], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["labels file /dev/zero: /dev/zero is not a regular file but a device",
                                          f"labels file {fifo}: {fifo} is not a regular file but a FIFO"]


def test_files_above_their_limit_and_deep_yaml_are_refused(tmp_path):
    big = tmp_path / "labels.yaml"
    big.write_text("# padding\n" * (YAML_LIMIT // 10 + 1))
    with pytest.raises(LabelsError, match=f"more than the limit of {YAML_LIMIT}"):
        read_labels_file(big, 4)
    with pytest.raises(InputFileError, match="more than the limit of 100"):
        read_text(big, limit=100)
    (deep := tmp_path / "deep.yaml").write_text("classes: " + "[" * 5000 + "]" * 5000)
    with pytest.raises(LabelsError, match="nests deeper than the YAML parser can follow"):
        read_labels_file(deep, 4)
    with pytest.raises(InputFileError, match="is not a regular file but a directory"):
        read_yaml(tmp_path)
    (ok := tmp_path / "ok.yaml").write_text(yaml.safe_dump({"a": [1, 2]}))
    assert read_yaml(ok) == {"a": [1, 2]}


def test_error_text_keeps_start_and_reason_within_its_limit():
    text = "encoding '" + "x" * 5_000_000 + "' is unknown;\nsupported: rgb8"
    kept = error_text(text)
    assert len(kept) < MAX_ERROR_CHARS + 40 and "\n" not in kept
    assert kept.startswith("encoding 'xxx") and kept.endswith("is unknown; supported: rgb8")
    assert error_text("short\n  text") == "short text"


# Data sets and clustvit eval ---------------------------------------------------------------------

def gray_png_bomb(side: int) -> bytes:
    """A valid 8-bit gray PNG of side x side zeros: 875 kB for 30000 (900 MB of pixels)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows, row = zlib.compressobj(9), b"\x00" * (1 + side)
    idat = b"".join(rows.compress(row) for _ in range(side)) + rows.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def folder(root, mask: bytes | None = None):
    """A one-image folder data set (root/val) of the tiny model's 4 classes; `mask` replaces its mask file."""
    base = root / "val"
    (base / "images").mkdir(parents=True)
    (base / "masks").mkdir()
    write_classes_file(root / "classes.txt", CLASSES)
    cv2.imwrite(str(base / "images" / "a.png"), np.zeros((32, 32, 3), np.uint8))
    if mask is None:
        cv2.imwrite(str(base / "masks" / "a.png"), np.zeros((32, 32), np.uint8))
    else:
        (base / "masks" / "a.png").write_bytes(mask)
    return root


def _eval_args(checkpoint, root) -> list[str]:
    return ["eval", "--checkpoint", str(checkpoint), "--dataset", "folder", "--root", str(root),
            "--device", "cpu", "--warmup", "0"]


def test_eval_of_a_30000_square_label_png_is_refused_from_its_header(tmp_path, checkpoint):
    """875 kB declaring 900 MP (it took `clustvit eval` to 14.3 GB): one line naming the file and the
    limit; the child, torch and the model included, peaks below 1 GiB (address space capped at
    3 GiB) within three minutes."""
    root = folder(tmp_path / "data", gray_png_bomb(30000))
    code, err, peak = run_bounded(_eval_args(checkpoint, root), tmp_path, memory=3 * GIB)
    assert code == 2 and "30000x30000 = 900000000 pixels exceeds max_pixels" in _one_line(err), err
    assert str(root / "val" / "masks" / "a.png") in err
    assert peak < GIB, f"peak RSS {peak >> 20} MiB"


@pytest.mark.parametrize("mask, reason", [(b"\x89PNG\r\n\x1a\n" + bytes(100), "corrupt or truncated PNG"),
                                          (b"not an image at all", "not an image file of a known format")])
def test_eval_of_a_corrupt_label_file_is_one_line(tmp_path, checkpoint, capsys, mask, reason):
    root = folder(tmp_path / "data", mask)
    assert main(_eval_args(checkpoint, root)) == 2
    err = _one_line(capsys.readouterr().err)
    assert reason in err and "a.png" in err


@pytest.mark.parametrize("dtype", [torch.int8, torch.bool])
def test_a_checkpoint_of_integer_tensors_is_refused_from_its_header(tmp_path, checkpoint, capsys, dtype):
    bad = int_checkpoint(checkpoint, tmp_path / "int.safetensors", dtype)
    with pytest.raises(CheckpointError, match="not floating point"):
        load_checkpoint(bad)
    assert main(_eval_args(bad, folder(tmp_path / "data"))) == 2
    assert "int.safetensors" in _one_line(capsys.readouterr().err)


def test_data_set_images_in_every_format_are_read_within_the_pixel_limit(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (24, 32, 3), np.uint8)
    for ext in (".png", ".jpg", ".bmp", ".tif", ".webp"):
        path = tmp_path / f"a{ext}"
        assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        assert read_rgb(path).shape == (24, 32, 3), ext
        with pytest.raises(ImageDecodeError, match=f"a{ext}: image of 32x24 = 768 pixels exceeds max_pixels=700"):
            read_rgb(path, max_pixels=700)
    bmp = bytearray((tmp_path / "a.bmp").read_bytes())
    bmp[18:26] = struct.pack("<ii", 10000, 10000)  # the header claims 100 MP
    (tmp_path / "big.bmp").write_bytes(bytes(bmp))
    claim = f"10000x10000 = 100000000 pixels exceeds max_pixels={DEFAULT_MAX_PIXELS}"
    with pytest.raises(ImageDecodeError, match=claim):
        read_rgb(tmp_path / "big.bmp")
    os.mkfifo(tmp_path / "images")
    with pytest.raises(InputFileError, match="not a regular file but a FIFO"):
        read_rgb(tmp_path / "images")


# clustvit train ----------------------------------------------------------------------------------

@pytest.mark.parametrize("override, reason", [
    ("train.batch_size=eight", "train.batch_size must be an integer, got 'eight'"),
    ("optim.lr=fast", "optim.lr must be a number, got 'fast'"),
    ("train.batch_size=2.5", "train.batch_size must be an integer, got 2.5"),
    ("data.crop=[32]", "data.crop must be a list of 2: [int, int], got [32]"),
    ("train.amp=true", "train.amp must be a string, got True"),
])
def test_train_with_a_value_of_the_wrong_type_is_one_line(tmp_path, capsys, override, reason):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(TINY))
    assert main(["train", "--config", str(recipe), override, f"train.out_dir={tmp_path / 'out'}"]) == 2
    assert reason in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_recipe_values_of_the_right_type_are_taken_as_such(tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(TINY))
    cfg = load_config(recipe, ["optim.lr=1", "data.scale=[64, 128]", "train.threads=null", "optim.grad_clip=1"])
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert cfg.data.scale == (64, 128) and cfg.train.threads is None and cfg.optim.grad_clip == 1.0
