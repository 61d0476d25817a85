"""``clustvit bag IN.mcap OUT.mcap --topic /camera/image_raw``: segment the images of a ROS 2 bag.

Reads a ROS 2 MCAP bag (rosbag2's default storage since Iron; ``ros2 bag convert`` makes one from
sqlite3), runs ``runtime.Engine`` on every message of the image topic (sensor_msgs/Image or
CompressedImage) and writes a bag holding all original messages unchanged (same schemas, channels,
log and publish times) plus, for each image, under ``<topic>/clustvit/`` (``--prefix``):

    mask        sensor_msgs/msg/Image       mono8 class ids at the image's resolution
    mask_color  sensor_msgs/msg/Image       rgb8 mask in the class palette     (--no-mask-color)
    overlay     sensor_msgs/msg/Image       rgb8 blend of image and mask      (--no-overlay)
    stats       clustvit_ros/msg/FrameStats what the frame cost (GFLOPs, latency, tokens)

each with the image's header and log time, so ``ros2 bag play`` and Foxglove show them in step.
FrameStats as the node fills them (``runtime.frame``), except that ``queue_ms`` is 0 and
``stamp_age_ms`` NaN: nothing waits or travels offline.

Untrusted bags: an image message that cannot be decoded (corrupt CDR bytes, a schema that does not
match its type, a bad or oversized image, a model input out of bounds) is skipped and counted, as the
node does. No chunk is inflated, nor record read, beyond ``--max-chunk-mib`` (``bag_reader``). The
output is written to a temporary file beside OUTPUT and renamed over it only when complete, so a
failed run (a stop signal too: see ``cli``) leaves any previous OUTPUT as it was; OUTPUT may not be
INPUT (compared by inode: links too) nor anything but a regular file. Every failure is one line and
a non-zero exit.

This module imports only argparse, the engine's option names and ``runtime.error_text`` at import
time (the ``clustvit`` command loads it for its help); running it needs mcap, mcap-ros2-support, the
ROS message packages' ``.msg`` files and torch.
"""
from __future__ import annotations

import argparse
import math
import os
import stat
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..runtime.error_text import error_text
from ..runtime.options import DESCRIPTIONS, DTYPE_NAMES, RESIZE_POLICIES, EngineOptions, check_merge

DEFAULT_MAX_CHUNK_MIB = 256
"""Largest inflated chunk, or other record, read from a bag by default (rosbag2 writes 768 KiB chunks,
and one larger message fills a chunk of its own: a 12.6 MP rgba16 image is 100 MB)."""
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
OUTPUT_TYPES = {"mask": "sensor_msgs/msg/Image", "mask_color": "sensor_msgs/msg/Image",
                "overlay": "sensor_msgs/msg/Image", "stats": "clustvit_ros/msg/FrameStats"}


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "bag", help="segment the images of a ROS 2 MCAP bag into a new bag",
        description="Run the ClustViT engine on an image topic of a ROS 2 MCAP bag and write a bag "
                    "with the original messages plus mask, mask_color, overlay and FrameStats topics.")
    p.add_argument("input", type=Path, help="ROS 2 bag: an .mcap file or a rosbag2 folder holding one")
    p.add_argument("output", type=Path, help="the .mcap file to write")
    p.add_argument("--topic", required=True, help="image topic (sensor_msgs/Image or CompressedImage)")
    p.add_argument("--checkpoint", default="", help=DESCRIPTIONS["checkpoint"])
    p.add_argument("--budget", type=float, default=1.0,
                   help="merge_budget in [0, 1]: 0 = dense, 1 = the model's own decision (default 1)")
    p.add_argument("--bias", type=float, default=0.0, help="merge_bias [logit] (default 0)")
    p.add_argument("--device", default="auto", help=DESCRIPTIONS["device"])
    p.add_argument("--dtype", default="fp32", choices=DTYPE_NAMES, help=DESCRIPTIONS["dtype"])
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), help=DESCRIPTIONS["input_size"])
    p.add_argument("--resize", default="fixed", choices=RESIZE_POLICIES, help=DESCRIPTIONS["resize"])
    p.add_argument("--labels-file", default="", help=DESCRIPTIONS["labels_file"])
    p.add_argument("--alpha", type=float, default=0.5, help="overlay weight of the mask (default 0.5)")
    p.add_argument("--max-image-pixels", type=int, metavar="N",
                   help="larger images are skipped (default: the node's max_image_pixels default)")
    p.add_argument("--max-chunk-mib", type=int, default=DEFAULT_MAX_CHUNK_MIB, metavar="MIB",
                   help="largest chunk (inflated) or other record of the bag to read; a larger one "
                        f"ends the run (default {DEFAULT_MAX_CHUNK_MIB})")
    p.add_argument("--prefix", default="", help="output topic prefix (default: <topic>/clustvit)")
    p.add_argument("--no-mask-color", action="store_true", help="do not write mask_color")
    p.add_argument("--no-overlay", action="store_true", help="do not write overlay")
    p.add_argument("--compression", default="zstd", choices=("zstd", "lz4", "none"),
                   help="chunk compression of the output (default zstd)")
    p.add_argument("--force", action="store_true", help="overwrite OUTPUT if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


@dataclass
class Summary:
    frames: int = 0
    errors: int = 0
    first_error: str = ""
    copied: int = 0
    written: dict = field(default_factory=dict)
    gflops: list = field(default_factory=list)
    dense_gflops: list = field(default_factory=list)
    latency_ms: list = field(default_factory=list)
    kept: list = field(default_factory=list)
    patches: list = field(default_factory=list)
    checkpoint: str = ""

    def skipped(self, log_time: int, reason: str) -> None:
        self.errors += 1
        self.first_error = self.first_error or error_text(f"log time {log_time}: {reason}")

    def add(self, frame, times) -> None:
        self.frames += 1
        self.gflops.append(frame.result.gflops)
        self.dense_gflops.append(frame.result.dense_gflops)
        self.latency_ms.append(times.latency_ms)
        self.kept.append(frame.result.stats.kept_tokens[0])
        self.patches.append(frame.result.stats.patch_tokens)


def run(args: argparse.Namespace) -> int:
    """`clustvit bag` handler; every failure is a one-line ValueError (the command line prints it, exit 2)."""
    source = _input_file(args.input)
    _check_output(args.output, source, args.force)
    if reason := check_merge(args.budget, args.bias):
        raise ValueError(f"{reason} (--budget, --bias)")
    options = EngineOptions.from_values(vars(args))  # refuses bad options before the bag is read
    if args.max_image_pixels is not None and args.max_image_pixels < 1:
        raise ValueError(f"--max-image-pixels must be positive, got {args.max_image_pixels}")
    if not 0.0 <= args.alpha <= 1.0:
        raise ValueError(f"--alpha must lie in [0, 1], got {args.alpha}")
    if args.input_size is not None and not all(1 <= v <= 8192 for v in args.input_size):
        raise ValueError(f"--input-size must be H W with 1..8192 each, got {' '.join(map(str, args.input_size))}")
    if args.max_chunk_mib < 1:
        raise ValueError(f"--max-chunk-mib must be positive, got {args.max_chunk_mib}")
    try:
        summary, seconds = process_bag(source, args, options)
    except OSError as exc:  # reading errors are ValueErrors by now: this is the output
        raise ValueError(f"cannot write {args.output}: {exc.strerror or exc}") from exc
    print_summary(summary, seconds, args)
    return 0 if summary.frames else 1


def _input_file(path: Path) -> Path:
    if path.is_dir():  # a rosbag2 folder: metadata.yaml + one or more .mcap files
        files = sorted(path.glob("*.mcap"))
        if len(files) != 1:
            raise ValueError(f"{path} is a folder with {len(files)} .mcap files; give the .mcap file itself")
        return files[0]
    if not path.is_file():
        raise ValueError(f"input bag {path} does not exist")
    return path


def _check_output(output: Path, source: Path, force: bool) -> None:
    """Refuse an OUTPUT that is INPUT (same inode: a hard or symbolic link too), that is not a
    regular file (a directory, /dev/full), or that exists without --force."""
    try:
        found = output.stat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ValueError(f"cannot use OUTPUT {output}: {exc.strerror or exc}") from exc
    if os.path.samestat(found, source.stat()):
        raise ValueError(f"OUTPUT {output} is the same file as INPUT {source} (a link to it?); "
                         "choose another OUTPUT")
    if not stat.S_ISREG(found.st_mode):
        kind = "a directory" if stat.S_ISDIR(found.st_mode) else "a device or other special file"
        raise ValueError(f"OUTPUT {output} is not a regular file but {kind}")
    if not force:
        raise ValueError(f"{output} exists; pass --force to overwrite it")


def _open_engine(options: EngineOptions):
    from ..runtime.engine import Engine

    engine = Engine.from_options(options)
    for warning in engine.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return engine


def _read_summary(source: Path):
    from mcap.reader import make_reader

    try:
        with open(source, "rb") as f:
            summary = make_reader(f).get_summary()
    except Exception as exc:  # any failure to parse the file's own structure: not a usable bag
        raise ValueError(f"{source} is not a readable MCAP file: {exc}") from exc
    if summary is None:
        raise ValueError(f"{source} has no summary section (an unfinished recording?); "
                         "repair it with `mcap recover` first")
    return summary


def _image_channel(summary, topic: str, source: Path):
    """The image channel and its schema, else a ValueError listing the bag's image topics."""
    channels = {c.topic: c for c in summary.channels.values()}
    channel = channels.get(topic)
    schema = summary.schemas.get(channel.schema_id) if channel else None
    if schema is None or schema.name not in IMAGE_TYPES:
        images = sorted(t for t, c in channels.items()
                        if (s := summary.schemas.get(c.schema_id)) is not None and s.name in IMAGE_TYPES)
        raise ValueError(f"{source} has no image topic {topic!r}; its image topics: {', '.join(images) or 'none'}")
    return channel, schema


def _messages(stream, info, source: Path, max_bytes: int):
    """(channel, message) of the bag in file order, no chunk inflated beyond `max_bytes`; a record
    the reader cannot parse, or one above the limit, ends the run with its reason."""
    from .bag_reader import ChunkTooLarge, iter_messages

    stream.seek(0)
    messages = iter_messages(stream, max_bytes)
    while True:
        try:
            message = next(messages)
        except StopIteration:
            return
        except ChunkTooLarge:
            raise
        except Exception as exc:  # the reader's own parsing of the file failed: corrupt beyond a message
            raise ValueError(f"{source} is corrupt: {type(exc).__name__}: {exc}") from exc
        channel = info.channels.get(message.channel_id)
        if channel is None:
            raise ValueError(f"{source} is corrupt: a message on channel {message.channel_id}, "
                             "which its summary does not list")
        yield channel, message


def process_bag(source: Path, args, options: EngineOptions) -> tuple[Summary, float]:
    """Copy the bag to ``args.output`` with a segmentation of every image of ``args.topic``."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    from ..model.budget import MergeBudget
    from .bag_images import BagImages
    from .bag_output import OutputBag, replacing
    from .bag_reader import check_chunk_index

    info = _read_summary(source)
    channel, schema = _image_channel(info, args.topic, source)
    prefix = (args.prefix or f"{args.topic.rstrip('/')}/clustvit").rstrip("/")
    outputs = {name: (f"{prefix}/{name}", type_name) for name, type_name in OUTPUT_TYPES.items()
               if not (name == "mask_color" and args.no_mask_color) and not (name == "overlay" and args.no_overlay)}
    clashes = sorted(t for t, _ in outputs.values() if any(c.topic == t for c in info.channels.values()))
    if clashes:
        raise ValueError(f"{source} already has {', '.join(clashes)} (segmented before?); choose another --prefix")
    if (channel.message_encoding, schema.encoding) != ("cdr", "ros2msg"):
        raise ValueError(f"cannot decode {args.topic}: encoding {channel.message_encoding!r}, "
                         f"schema encoding {schema.encoding!r} (need cdr + ros2msg)")
    max_bytes = args.max_chunk_mib << 20
    check_chunk_index(info, max_bytes)  # before the model loads; the reader holds to it whatever the index says
    images = BagImages(lambda: DecoderFactory().decoder_for(channel.message_encoding, schema),
                       schema.name.endswith("CompressedImage"), args.max_image_pixels)
    engine = _open_engine(options)
    budget = MergeBudget(args.budget, args.bias)
    summary = Summary(checkpoint=str(engine.checkpoint))
    progress = _progress(info.statistics.channel_message_counts.get(channel.id) if info.statistics else None,
                         args)
    start = time.monotonic()
    try:
        with open(source, "rb") as fin, replacing(args.output) as fout:
            reader = make_reader(fin)
            out = OutputBag(fout, reader.get_header().profile, args.compression, info, outputs)
            for in_channel, message in _messages(fin, info, source, max_bytes):
                out.copy(in_channel.id, message)
                summary.copied += 1
                if in_channel.id == channel.id:
                    progress.update(1)
                    _segment(message, images, engine, budget, args.alpha, out, summary)
            out.finish()
    finally:
        progress.close()
    summary.written = dict(out.written)
    return summary, time.monotonic() - start


def _segment(message, images, engine, budget, alpha: float, out, summary: Summary) -> None:
    """One image message: its outputs written at its log time, or a skip counted with the reason."""
    from ..runtime.engine import InputRejected
    from ..runtime.frame import Frame, FrameTimes
    from .image_codec import ImageDecodeError

    started = time.monotonic()
    try:
        msg, rgb = images.decode(message.data)
        decoded = time.monotonic()
        frame = Frame(rgb, engine.run(rgb, budget), engine.classes.palette)
    except (ImageDecodeError, InputRejected) as exc:
        summary.skipped(message.log_time, str(exc))
        return
    segmented = time.monotonic()
    header = {"stamp": {"sec": msg.header.stamp.sec, "nanosec": msg.header.stamp.nanosec},
              "frame_id": msg.header.frame_id}
    encoded = {"mask": out.encode_image("mask", header, frame.mask)}
    if out.wants("mask_color"):
        encoded["mask_color"] = out.encode_image("mask_color", header, frame.color)
    if out.wants("overlay"):
        encoded["overlay"] = out.encode_image("overlay", header, frame.overlay(alpha))
    times = FrameTimes.from_marks(started, started, decoded, segmented, time.monotonic())
    encoded["stats"] = out.encode("stats", {"header": header, **frame.stats(times, budget, 0)})
    out.write(encoded, message, summary.frames)
    summary.add(frame, times)


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total, args):
    if args.quiet:
        return _NoProgress()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoProgress()
    return tqdm(total=total, unit="frame", desc=f"clustvit bag {args.topic}", file=sys.stderr)


def print_summary(summary: Summary, seconds: float, args) -> None:
    from ..runtime.percentile import percentile

    def mean(values):
        return sum(values) / len(values) if values else math.nan

    g, d = mean(summary.gflops), mean(summary.dense_gflops)
    saved = 100.0 * (1.0 - g / d) if d > 0 else math.nan
    rows = [
        ("input", str(args.input)),
        ("output", f"{args.output} ({args.output.stat().st_size / 1e6:.1f} MB)"),
        ("model", f"{summary.checkpoint}"),
        ("merge budget / bias", f"{args.budget:g} / {args.bias:g}"),
        ("frames segmented", f"{summary.frames} in {seconds:.1f} s ({summary.frames / max(seconds, 1e-9):.1f} fps)"),
        ("bad images skipped", f"{summary.errors}" + (f" (first: {summary.first_error})" if summary.errors else "")),
        ("GFLOPs / frame", f"{g:.3f} (dense {d:.3f}, {saved:.1f} % saved)"),
        ("kept tokens / frame", f"{mean(summary.kept):.0f} of {mean(summary.patches):.0f}"),
        ("latency / frame", f"mean {mean(summary.latency_ms):.1f} ms, p95 {percentile(summary.latency_ms, 95):.1f} ms"),
        ("messages copied", str(summary.copied)),
    ]
    rows += [(f"wrote {topic}", str(count)) for topic, count in summary.written.items()]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))
