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

This module imports only argparse and the engine's option names at import time (the ``clustvit``
command loads it for its help);
running it needs mcap, mcap-ros2-support, the ROS message packages' ``.msg`` files and torch.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..runtime.choices import DTYPE_NAMES, RESIZE_POLICIES

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
OUTPUTS = ("mask", "mask_color", "overlay", "stats")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "bag", help="segment the images of a ROS 2 MCAP bag into a new bag",
        description="Run the ClustViT engine on an image topic of a ROS 2 MCAP bag and write a bag "
                    "with the original messages plus mask, mask_color, overlay and FrameStats topics.")
    p.add_argument("input", type=Path, help="ROS 2 bag: an .mcap file or a rosbag2 folder holding one")
    p.add_argument("output", type=Path, help="the .mcap file to write")
    p.add_argument("--topic", required=True, help="image topic (sensor_msgs/Image or CompressedImage)")
    p.add_argument("--checkpoint", default="", help="model .safetensors (default: the packaged model)")
    p.add_argument("--budget", type=float, default=1.0,
                   help="merge_budget in [0, 1]: 0 = dense, 1 = the model's own decision (default 1)")
    p.add_argument("--bias", type=float, default=0.0, help="merge_bias [logit] (default 0)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--dtype", default="fp32", choices=DTYPE_NAMES)
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                   help="model input size (default: the model's training size)")
    p.add_argument("--resize", default="fixed", choices=RESIZE_POLICIES)
    p.add_argument("--labels-file", default="", help="labels YAML for mask_color/overlay colours")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay weight of the mask (default 0.5)")
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


def _input_file(path: Path) -> Path:
    if path.is_dir():  # a rosbag2 folder: metadata.yaml + one or more .mcap files
        files = sorted(path.glob("*.mcap"))
        if len(files) != 1:
            raise ValueError(f"{path} is a folder with {len(files)} .mcap files; give the .mcap file itself")
        return files[0]
    if not path.is_file():
        raise ValueError(f"input bag {path} does not exist")
    return path


def run(args: argparse.Namespace) -> int:
    """`clustvit bag` handler; raises ValueError for bad input (the command line prints it, exit 2)."""
    from mcap.exceptions import McapError

    source = _input_file(args.input)
    if args.output.exists() and not args.force:
        raise ValueError(f"{args.output} exists; pass --force to overwrite it")
    if args.output.resolve() == source.resolve():
        raise ValueError("OUTPUT must differ from INPUT")
    if not 0.0 <= args.budget <= 1.0 or not math.isfinite(args.bias):
        raise ValueError(f"--budget must lie in [0, 1] and --bias be finite, got {args.budget}, {args.bias}")
    try:
        summary, seconds = process_bag(source, args)
    except McapError as exc:
        raise ValueError(f"{source} is not a readable MCAP file: {exc}") from exc
    print_summary(summary, seconds, args)
    return 0 if summary.frames else 1


def _open_engine(args):
    from ..runtime.engine import Engine
    from ..runtime.packaged import default_checkpoint

    checkpoint = args.checkpoint or str(default_checkpoint())
    engine = Engine(checkpoint, device=args.device, dtype=args.dtype,
                       input_size=tuple(args.input_size) if args.input_size else None,
                       resize=args.resize, labels_file=args.labels_file or None)
    for warning in engine.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return engine, checkpoint


def process_bag(source: Path, args) -> tuple[Summary, float]:
    from mcap.reader import make_reader
    from mcap.writer import CompressionType, Writer
    from mcap_ros2._dynamic import serialize_dynamic  # the encoder mcap_ros2.writer.Writer uses
    from mcap_ros2.decoder import DecoderFactory

    from .msg_defs import message_definition

    with open(source, "rb") as f:
        summary_info = make_reader(f).get_summary()
    if summary_info is None:
        raise ValueError(f"{source} has no summary section (an unfinished recording?); "
                         "repair it with `mcap recover` first")
    channels = {c.topic: c for c in summary_info.channels.values()}
    image_channel = channels.get(args.topic)
    image_schema = summary_info.schemas.get(image_channel.schema_id) if image_channel else None
    if image_channel is None or image_schema is None or image_schema.name not in IMAGE_TYPES:
        images = sorted(t for t, c in channels.items()
                        if (s := summary_info.schemas.get(c.schema_id)) is not None and s.name in IMAGE_TYPES)
        raise ValueError(f"{source} has no image topic {args.topic!r}; its image topics: "
                         f"{', '.join(images) or 'none'}")
    compressed = image_schema.name.endswith("CompressedImage")
    total = (summary_info.statistics.channel_message_counts.get(image_channel.id)
             if summary_info.statistics else None)

    prefix = (args.prefix or f"{args.topic.rstrip('/')}/clustvit").rstrip("/")
    wanted = [o for o in OUTPUTS if not (o == "mask_color" and args.no_mask_color)
              and not (o == "overlay" and args.no_overlay)]
    clashes = sorted(f"{prefix}/{name}" for name in wanted if f"{prefix}/{name}" in channels)
    if clashes:
        raise ValueError(f"{source} already has {', '.join(clashes)} (segmented before?); choose "
                         "another --prefix")

    engine, checkpoint = _open_engine(args)
    from ..model.budget import MergeBudget
    from ..runtime.frame import Frame, FrameTimes
    from .image_codec import ImageDecodeError, compressed_to_rgb8, to_rgb8

    budget = MergeBudget(args.budget, args.bias)
    decode_image = DecoderFactory().decoder_for(image_channel.message_encoding, image_schema)
    if decode_image is None:
        raise ValueError(f"cannot decode {args.topic}: encoding {image_channel.message_encoding!r}, "
                         f"schema encoding {image_schema.encoding!r} (need cdr + ros2msg)")

    summary = Summary()
    start = time.monotonic()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    compression = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4,
                   "none": CompressionType.NONE}[args.compression]
    with open(source, "rb") as fin, open(args.output, "wb") as fout:
        reader = make_reader(fin)
        writer = Writer(fout, compression=compression)
        writer.start(profile=reader.get_header().profile or "ros2", library="clustvit_ros clustvit bag")
        schema_ids: dict[int, int] = {}
        channel_ids: dict[int, int] = {}
        for schema in summary_info.schemas.values():
            schema_ids[schema.id] = writer.register_schema(schema.name, schema.encoding, schema.data)
        for channel in summary_info.channels.values():
            channel_ids[channel.id] = writer.register_channel(
                channel.topic, channel.message_encoding, schema_ids.get(channel.schema_id, 0),
                dict(channel.metadata))
        out_types = {"mask": "sensor_msgs/msg/Image", "mask_color": "sensor_msgs/msg/Image",
                     "overlay": "sensor_msgs/msg/Image", "stats": "clustvit_ros/msg/FrameStats"}
        encoders, out_channels = {}, {}
        existing = {s.name: schema_ids[s.id] for s in summary_info.schemas.values() if s.encoding == "ros2msg"}
        for name in wanted:
            type_name = out_types[name]
            definition = message_definition(type_name)
            if type_name not in existing:
                existing[type_name] = writer.register_schema(type_name, "ros2msg", definition.encode())
            encoders[name] = serialize_dynamic(type_name, definition)[type_name]
            out_channels[name] = writer.register_channel(f"{prefix}/{name}", "cdr", existing[type_name])
            summary.written[f"{prefix}/{name}"] = 0

        progress = _progress(total, args)
        for schema, channel, message in reader.iter_messages(log_time_order=False):
            writer.add_message(channel_ids[channel.id], message.log_time, message.data,
                               message.publish_time, message.sequence)
            summary.copied += 1
            if channel.id != image_channel.id:
                continue
            progress.update(1)
            started = time.monotonic()
            msg = decode_image(message.data)
            try:
                rgb = compressed_to_rgb8(msg) if compressed else to_rgb8(msg)
            except ImageDecodeError as exc:
                summary.errors += 1
                summary.first_error = summary.first_error or f"log time {message.log_time}: {exc}"
                continue
            decoded = time.monotonic()
            frame = Frame(rgb, engine.run(rgb, budget), engine.classes.palette)
            segmented = time.monotonic()
            header = {"stamp": {"sec": msg.header.stamp.sec, "nanosec": msg.header.stamp.nanosec},
                      "frame_id": msg.header.frame_id}
            out = {"mask": _image(header, frame.mask, "mono8")}
            if "mask_color" in wanted:
                out["mask_color"] = _image(header, frame.colour, "rgb8")
            if "overlay" in wanted:
                out["overlay"] = _image(header, frame.overlay(args.alpha), "rgb8")
            encoded = {name: encoders[name](value) for name, value in out.items()}
            times = FrameTimes.from_marks(started, started, decoded, segmented, time.monotonic())
            encoded["stats"] = encoders["stats"]({"header": header, **frame.stats(times, budget, 0)})
            for name, data in encoded.items():
                writer.add_message(out_channels[name], message.log_time, data, message.publish_time,
                                   summary.frames)
                summary.written[f"{prefix}/{name}"] += 1
            summary.frames += 1
            summary.gflops.append(frame.result.gflops)
            summary.dense_gflops.append(frame.result.dense_gflops)
            summary.latency_ms.append(times.latency_ms)
            summary.kept.append(frame.result.stats.kept_tokens[0])
            summary.patches.append(frame.result.stats.patch_tokens)
        progress.close()
        writer.finish()
    summary.checkpoint = checkpoint
    return summary, time.monotonic() - start


def _image(header: dict, array, encoding: str) -> dict:
    height, width = array.shape[:2]
    channels = 1 if array.ndim == 2 else array.shape[2]
    return {"header": header, "height": height, "width": width, "encoding": encoding,
            "is_bigendian": 0, "step": width * channels, "data": array.tobytes()}


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
