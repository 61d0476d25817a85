"""ROS side of the node benchmarks: environment, camera, receiver, node process, bench models.

Importing this module fixes the DDS environment before rclpy loads: loopback-only discovery, a
ROS_DOMAIN_ID of this run's own (CLUSTVIT_BENCH_DOMAIN_ID, else random in 1..100) and the shipped
Fast DDS profile (config/fastdds.xml, 32 MiB shared-memory segments). Child processes inherit it.
"""
from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.pop("ROS_LOCALHOST_ONLY", None)
# Children (the node process) import this module too: they must land on the same domain.
os.environ.setdefault("CLUSTVIT_BENCH_DOMAIN_ID", str(random.SystemRandom().randint(1, 100)))
os.environ["ROS_DOMAIN_ID"] = os.environ["CLUSTVIT_BENCH_DOMAIN_ID"]
os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(REPO / "config" / "fastdds.xml")
os.environ.setdefault("AMENT_PREFIX_PATH", sys.prefix)
os.environ["PYTHONUNBUFFERED"] = "1"
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from clustvit_ros.msg import FrameStats  # noqa: E402
from clustvit_ros.ros.image_codec import numpy_to_image  # noqa: E402

NODE_EXECUTABLE = Path(sys.prefix) / "lib" / "clustvit_ros" / "clustvit_node"
NODE_RUNNER = Path(__file__).resolve().parent / "node_runner.py"
STATS_FIELDS = ("stamp_age_ms", "latency_ms", "queue_ms", "preprocess_ms", "inference_ms",
                "postprocess_ms", "frames_dropped", "kept_tokens", "patch_tokens", "gflops",
                "merge_budget", "merge_bias")
_count = itertools.count()


def unique_namespace(tag: str) -> str:
    return f"/bench_{tag}_{os.getpid()}_{next(_count)}"


def ros_info() -> str:
    rmw = os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp (default)")
    return (f"ROS 2 {os.environ.get('ROS_DISTRO', 'Kilted')} rclpy wheels, {rmw}, Fast DDS profile "
            "config/fastdds.xml, ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST")


# Models ----------------------------------------------------------------------------------------

BENCH_MODELS = {
    # 4 blocks of width 128 at 256x256: a fast model, so the node's own overhead is visible.
    "small": dict(embed_dim=128, depth=4, num_heads=4, mlp_hidden=512, cluster_hidden=128,
                  img_size=(256, 256), k=3, ip=1, head="linear", num_classes=8, drop_path=0.0),
    # 2 blocks of width 64 at 128x128: the soak model (thousands of frames in minutes).
    "soak": dict(embed_dim=64, depth=2, num_heads=2, mlp_hidden=128, cluster_hidden=64,
                 img_size=(128, 128), k=3, ip=1, head="linear", num_classes=4, drop_path=0.0),
}


def make_bench_checkpoint(name: str, path: Path, seed: int = 0) -> Path:
    """A random-weight checkpoint of one of BENCH_MODELS, in the project's real format."""
    import torch

    from clustvit_ros.model import ClustViT, ClustViTConfig, save_checkpoint

    torch.manual_seed(seed)
    save_checkpoint(ClustViT(ClustViTConfig(**BENCH_MODELS[name])).eval(), path)
    return path


def describe_checkpoint(path: Path) -> str:
    from clustvit_ros.model.checkpoints import read_metadata

    c, _ = read_metadata(path)
    return (f"{c.embed_dim}d × {c.depth} blocks, {c.img_size[0]}×{c.img_size[1]}, k={c.k}, ip={c.ip}, "
            f"{c.head} head, {c.num_classes} classes")


def camera_frames(width: int, height: int, count: int = 4, seed: int = 0) -> list[Image]:
    """`count` synthetic robot scenes as rgb8 Image messages (built once; only stamps change)."""
    from clustvit_ros.data.synthetic import render_scene

    rng = np.random.default_rng(seed)
    return [numpy_to_image(np.ascontiguousarray(render_scene(rng, (height, width))[0]), "rgb8")
            for _ in range(count)]


def camvid_frames() -> list[Image]:
    """The packaged CamVid sample frames (480x360 road scenes) as rgb8 Image messages, in name order."""
    import cv2

    from clustvit_ros.runtime.packaged import SAMPLE_FRAMES

    return [numpy_to_image(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), "rgb8")
            for path in sorted((REPO / SAMPLE_FRAMES).glob("*.jpg"))]


# Camera and receiver ---------------------------------------------------------------------------

class Camera:
    """Publishes `frames` in turn at `rate` Hz from its own thread, stamped with the wall clock at
    publish time (as a driver stamps at capture); counts what it published."""

    def __init__(self, node, topic: str, frames: list[Image], rate: float):
        qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        self.pub = node.create_publisher(Image, topic, qos)
        self.frames, self.period = frames, 1.0 / rate
        self.published = 0
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench_camera", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        next_at = time.monotonic()
        for i in itertools.count():
            if self._stop.is_set():
                return
            msg = self.frames[i % len(self.frames)]
            now = time.time_ns()
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now, 1_000_000_000)
            msg.header.frame_id = "camera"
            try:
                self.pub.publish(msg)
                self.published += 1
            except Exception:  # noqa: BLE001  a failed publish is counted, the camera goes on
                self.errors += 1
            next_at += self.period
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                next_at = time.monotonic()  # late: do not burst to catch up

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


@dataclass
class Frame:
    stamp_ns: int
    received_ns: int
    stats: dict


@dataclass
class Receiver:
    """Subscribes to a clustvit node's ~/stats and ~/mask; records each with its arrival time."""

    node: object
    fqn: str
    frames: list[Frame] = field(default_factory=list)
    mask_received: dict[int, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def create(cls, node, fqn: str, mask: bool = True) -> "Receiver":
        r = cls(node, fqn)
        node.create_subscription(FrameStats, f"{fqn}/stats", r._on_stats, 50)
        if mask:
            node.create_subscription(Image, f"{fqn}/mask", r._on_mask, 10)
        return r

    def _on_stats(self, msg) -> None:
        now = time.time_ns()
        s = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self.lock:
            self.frames.append(Frame(s, now, {k: getattr(msg, k) for k in STATS_FIELDS}))

    def _on_mask(self, msg) -> None:
        now = time.time_ns()
        with self.lock:
            self.mask_received[msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec] = now

    def count(self) -> int:
        with self.lock:
            return len(self.frames)

    def take(self) -> tuple[list[Frame], dict[int, int]]:
        """Everything recorded so far; clears the record."""
        with self.lock:
            frames, masks = self.frames, self.mask_received
            self.frames, self.mask_received = [], {}
        return frames, masks


class Spinner:
    """A SingleThreadedExecutor spinning `nodes` on a thread of its own."""

    def __init__(self, context, *nodes):
        self.executor = SingleThreadedExecutor(context=context)
        for n in nodes:
            self.executor.add_node(n)
        self.thread = threading.Thread(target=self.executor.spin, name="bench_executor", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.executor.shutdown()
        self.thread.join(timeout=5)


def wait_for(predicate, timeout: float, what: str, check=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if check:
            check()
        time.sleep(0.02)
    raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")


# Engine times ----------------------------------------------------------------------------------

def engine_key(inference_ms: float) -> float:
    """The float32 value FrameStats.inference_ms carries for an engine's inference_ms."""
    return float(np.float32(inference_ms))


def record_engine_times(target, times: dict) -> None:
    """Wrap `target.run` (an Engine or the Engine class) so every Result's stage times land in
    `times[engine_key(inference_ms)] = (preprocess_ms, inference_ms, postprocess_ms)`; the key finds
    the FrameStats of that frame. Adds a dict store per frame, nothing else."""
    real = target.run
    if isinstance(target, type):
        def run(self, *args, **kwargs):
            r = real(self, *args, **kwargs)
            times[engine_key(r.inference_ms)] = (r.preprocess_ms, r.inference_ms, r.postprocess_ms)
            return r
    else:
        def run(*args, **kwargs):
            r = real(*args, **kwargs)
            times[engine_key(r.inference_ms)] = (r.preprocess_ms, r.inference_ms, r.postprocess_ms)
            return r
    target.run = run


# Node process ----------------------------------------------------------------------------------

class NodeProcess:
    """The node in a process of its own (own session), its output in `log`; stop() = SIGINT."""

    def __init__(self, argv: list[str], log: Path):
        self.log_path = log
        self._log = open(log, "w")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
                                     cwd=REPO)

    @classmethod
    def start(cls, namespace: str, params: dict, log: Path, engine_times: Path | None = None) -> "NodeProcess":
        """The installed clustvit_node, or (with `engine_times`) the same main() through node_runner.py,
        which also writes every frame's engine stage times to that JSON file at exit."""
        if engine_times is None:
            argv = [str(NODE_EXECUTABLE)]
        else:
            argv = [sys.executable, str(NODE_RUNNER), "--engine-times", str(engine_times)]
        argv += ["--ros-args", "-r", f"__ns:={namespace}"]
        for name, value in params.items():
            argv += ["-p", f"{name}:={value}"]
        return cls(argv, log)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the node exited with code {self.proc.returncode}:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._log.close()
        return self.proc.returncode


def load_engine_times(path: Path) -> dict:
    if not path.is_file():
        return {}
    return {float(k): tuple(v) for k, v in json.loads(path.read_text()).items()}
