"""The ClustViT node: camera images (and camera_info) in; masks, overlay, FrameStats, the mask's
camera_info and diagnostics out.

The node is thin. The subscription callback only puts the message into a one-slot mailbox; a worker
thread decodes it, runs `runtime.Engine` with the live merge budget and publishes. Every output
carries the input's header. Parameters are validated in the set-parameters callback and swapped in
as one immutable value, so a change applies to the next frame with no lock around the model.

SIGINT/SIGTERM never raise here: they set a `StopSignal` that the spin loop polls (see `main`).
"""
from __future__ import annotations

import ctypes
import math
import os
import sys
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Float32

from clustvit_ros.msg import FrameStats

from ..model.budget import MergeBudget
from ..runtime.engine import Engine, InputRejected
from ..runtime.frame import Frame, FrameTimes
from ..runtime.packaged import resolve_checkpoint
from .camera_info import camera_info_for, camera_info_topic
from .image_codec import ImageDecodeError, compressed_to_rgb8, numpy_to_image, to_rgb8
from .latest_slot import LatestSlot
from .params import PARAMETERS, LiveSettings, check, descriptor
from .share import share_dirs
from .stats import DiagnosticsWindow
from .stop_signal import StopSignal

NODE_NAME = "clustvit"
LOG_THROTTLE_S = 5.0
# How long shutdown waits for the frame in flight (warm-up included) before abandoning it; launch
# escalates to SIGTERM after 5 s.
FRAME_WAIT_S = 3.0
RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE,
               "system_default": ReliabilityPolicy.SYSTEM_DEFAULT}


class StartupError(RuntimeError):
    """The node cannot start (bad start-up parameter, missing or corrupt model)."""


class ClustViTNode(Node):
    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        for spec in PARAMETERS:
            self.declare_parameter(spec.name, spec.default, descriptor(spec))
        p = {spec.name: self.get_parameter(spec.name).value for spec in PARAMETERS}
        p["input_size"] = list(p["input_size"])
        for name, value in p.items():
            if reason := check(name, value):
                raise StartupError(f"invalid parameter: {reason}")
        self._settings = LiveSettings().updated(p)
        self._max_pixels = p["max_image_pixels"]
        self._diag_period = p["diagnostics_period"]
        self._compressed = p["compressed"]
        self._threads = p["threads"]

        checkpoint = str(resolve_checkpoint(p["checkpoint"], *share_dirs()))
        try:
            self.engine = Engine(checkpoint, device=p["device"], dtype=p["dtype"],
                                 input_size=tuple(p["input_size"]) if p["input_size"][0] else None,
                                 resize=p["resize"], labels_file=p["labels_file"] or None,
                                 cuda_graphs=p["cuda_graphs"])
        except (OSError, ValueError) as exc:
            raise StartupError(str(exc)) from exc
        for warning in self.engine.warnings:
            self.get_logger().warning(warning)
        self._model_info = (f"{Path(checkpoint).name} ({self.engine.config.variant}, k={self.engine.config.k}, "
                            f"ip={self.engine.config.ip}, {self.engine.config.num_classes} classes)")

        self._pub_mask = self.create_publisher(Image, "~/mask", 1)
        self._pub_color = self.create_publisher(Image, "~/mask_color", 1)
        self._pub_overlay = self.create_publisher(Image, "~/overlay", 1)
        self._pub_stats = self.create_publisher(FrameStats, "~/stats", 10)
        self._pub_gflops = self.create_publisher(Float32, "~/gflops", 10)
        self._pub_latency = self.create_publisher(Float32, "~/latency_ms", 10)
        self._pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._pub_info = self.create_publisher(CameraInfo, "~/camera_info", 1)

        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=p["qos_depth"],
                         reliability=RELIABILITY[p["qos_reliability"]])
        msg_type, topic = (CompressedImage, "image/compressed") if self._compressed else (Image, "image")
        # Threads: the executor runs the callbacks and the diagnostics timer, the worker the frames.
        # What they share is guarded or immutable: `_settings` is a frozen LiveSettings replaced
        # whole, `_slot` and `_diag` take their own locks, `_closing` is an Event, `_camera_info`
        # is replaced whole; everything else (engine, publishers, start-up values) is set here and
        # never reassigned.
        self._slot: LatestSlot[tuple[Image | CompressedImage, float]] = LatestSlot()
        self._diag = DiagnosticsWindow()
        self._closing = threading.Event()
        self._camera_info: CameraInfo | None = None
        self.create_subscription(msg_type, topic, self._on_image, qos)
        self.create_subscription(CameraInfo, camera_info_topic(self.resolve_topic_name("image")),
                                 self._on_camera_info, qos)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.create_timer(self._diag_period, self._publish_diagnostics)
        self._worker = threading.Thread(target=self._work, name="clustvit_inference", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"segmenting {self.resolve_topic_name(topic)} with {self._model_info} on "
            f"{self.engine.device} ({p['dtype']}), merge_budget={self._settings.merge_budget}")

    # Executor thread -------------------------------------------------------------------------

    def _on_image(self, msg: Image | CompressedImage) -> None:
        if self._settings.enabled:
            self._slot.put((msg, time.monotonic()))

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    def _on_set_parameters(self, params) -> SetParametersResult:
        changes = {param.name: param.value for param in params}
        for name, value in changes.items():
            if reason := check(name, value):
                return SetParametersResult(successful=False, reason=reason)
        settings = self._settings.updated(changes)
        if not settings.enabled:
            self._slot.clear()
        self._settings = settings
        return SetParametersResult(successful=True)

    def _publish_diagnostics(self) -> None:
        s = self._settings
        extra = {"device": str(self.engine.device), "dtype": str(self.engine.dtype).removeprefix("torch."),
                 "model": self._model_info, "threads": str(torch.get_num_threads()),
                 "enabled": str(s.enabled),
                 "merge_budget": f"{s.merge_budget:g}", "merge_bias": f"{s.merge_bias:g}",
                 "frames_received": str(self._slot.received)}
        status = self._diag.status(self._diag_period, self._slot.dropped, extra)
        status.name = f"{self.get_fully_qualified_name()}: segmentation"
        status.hardware_id = str(self.engine.device)
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._pub_diag.publish(array)

    # Worker thread ---------------------------------------------------------------------------

    def _work(self) -> None:
        self._warm_up()
        while (item := self._slot.take()) is not None:
            settings = self._settings
            if not settings.enabled:
                continue
            try:
                self._process(*item, settings)
            except (ImageDecodeError, InputRejected) as exc:
                self._report("input", f"bad input image: {exc}")
            except torch.cuda.OutOfMemoryError as exc:
                self.engine.release_cached_memory()
                self._report("processing", f"out of memory on {self.engine.device}, frame skipped: {exc}")
            except Exception as exc:  # a frame that fails must not stop the node
                if self._closing.is_set():
                    return
                self._report("processing", f"processing failed: {type(exc).__name__}: {exc}")

    def _warm_up(self) -> None:
        """Set the thread count and run one blank frame here, before the first camera frame.

        The first frame pays for allocations and kernel selection. Running it on this thread also
        makes it the first to use torch's thread pool, which other threads then share at half speed
        (measured, docs/BENCHMARKS.md), so nothing else in this process should run torch.
        """
        if self._threads:
            torch.set_num_threads(self._threads)
        s = self._settings
        start = time.monotonic()
        try:
            blank = np.zeros((*self.engine.input_size, 3), np.uint8)
            self.engine.run(blank, MergeBudget(s.merge_budget, s.merge_bias))
        except Exception as exc:  # e.g. out of GPU memory: say so, frames will report their own errors
            self.engine.release_cached_memory()
            self.get_logger().warning(f"warm-up frame failed: {type(exc).__name__}: {exc}")
            return
        self.get_logger().info(f"ready: warm-up frame {(time.monotonic() - start) * 1e3:.0f} ms, "
                               f"{torch.get_num_threads()} inference threads")

    def _process(self, msg: Image | CompressedImage, received: float, settings: LiveSettings) -> None:
        started = time.monotonic()
        rgb = compressed_to_rgb8(msg, self._max_pixels) if self._compressed else to_rgb8(msg, self._max_pixels)
        decoded = time.monotonic()
        budget = MergeBudget(settings.merge_budget, settings.merge_bias)
        frame = Frame(rgb, self.engine.run(rgb, budget), self.engine.classes.palette)
        segmented = time.monotonic()
        header = msg.header
        self._pub_mask.publish(numpy_to_image(frame.mask, "mono8", header))
        if (info := self._camera_info) is not None:  # the newest: calibration rarely changes
            self._pub_info.publish(camera_info_for(info, header, frame.mask.shape[1], frame.mask.shape[0]))
        if settings.publish_mask_color and self._pub_color.get_subscription_count() > 0:
            self._pub_color.publish(numpy_to_image(frame.colour, "rgb8", header))
        if settings.publish_overlay and self._pub_overlay.get_subscription_count() > 0:
            self._pub_overlay.publish(numpy_to_image(frame.overlay(settings.overlay_alpha), "rgb8", header))
        times = FrameTimes.from_marks(received, started, decoded, segmented, time.monotonic(),
                                      self._stamp_age_ms(header))
        self._pub_stats.publish(FrameStats(header=header, **frame.stats(times, budget, self._slot.dropped)))
        if settings.publish_plot_topics:
            if self._pub_gflops.get_subscription_count() > 0:
                self._pub_gflops.publish(Float32(data=float(frame.result.gflops)))
            if self._pub_latency.get_subscription_count() > 0:
                self._pub_latency.publish(Float32(data=float(times.latency_ms)))
        self._diag.add_frame(times, frame.result.gflops)

    def _stamp_age_ms(self, header) -> float:
        if header.stamp.sec == 0 and header.stamp.nanosec == 0:
            return math.nan
        return (self.get_clock().now() - Time.from_msg(header.stamp)).nanoseconds / 1e6

    def _report(self, kind: str, text: str) -> None:
        self._diag.add_error(kind, text)
        self.get_logger().error(text, throttle_duration_sec=LOG_THROTTLE_S)

    def close(self, timeout: float = FRAME_WAIT_S) -> bool:
        """Stop the worker after the frame in flight, waiting up to `timeout` s; call before destroy_node().

        Returns False when that frame is still running: it is abandoned, and the caller must not let
        the interpreter finalise while the worker is inside torch (see `main`).
        """
        self._closing.set()
        self._slot.close()
        self._worker.join(timeout)
        return not self._worker.is_alive()


def main(args: list[str] | None = None, stop: StopSignal | None = None) -> int:
    """Entry point of `ros2 run clustvit_ros clustvit_node`; `args` go to rclpy (--ros-args ...).

    SIGINT/SIGTERM only set `stop` (the script installs it before importing torch), which the spin
    loop polls, and are ignored once the node is ending, so any number of them at any moment (model
    load, warm-up, inference, teardown) ends it with code 0. rclpy gets a context of its own and
    installs no signal handlers. Shutdown waits for the frame in flight up to FRAME_WAIT_S.
    """
    stop = stop or StopSignal().install()
    context = Context()
    rclpy.init(args=args, context=context, signal_handler_options=SignalHandlerOptions.NO)
    try:
        node = ClustViTNode(context=context)
    except StartupError as exc:
        rclpy.logging.get_logger(NODE_NAME).fatal(f"cannot start: {exc}")
        code, finished = 1, True
    else:
        code = _spin_until_stopped(node, stop)
        finished = node.close()
        if not finished:
            node.get_logger().warning(f"the frame in flight did not finish within {FRAME_WAIT_S:g} s: "
                                      "abandoned")
        node.destroy_node()
    stop.ignore_further()
    rclpy.try_shutdown(context=context)
    if not finished:
        _exit_now(code)
    return code


def _spin_until_stopped(node: ClustViTNode, stop: StopSignal) -> int:
    """Spin `node` until `stop`; returns the exit code (1 when a callback failed)."""
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    try:
        while not stop.requested:
            executor.spin_once(timeout_sec=0.1)
    except Exception:  # the worker must still be stopped, so this must not escape past main's close()
        node.get_logger().fatal(f"stopping after an unexpected error:\n{traceback.format_exc()}")
        return 1
    finally:
        executor.shutdown()
    return 0


def _exit_now(code: int) -> None:
    """End the process without finalising the interpreter, the worker still inside torch.

    Finalisation would stop that daemon thread in the middle of torch's C++ frames, which aborts the
    process ("terminate called without an active exception", exit code -6), and waiting for the frame
    would make shutdown unbounded. Nothing is left to clean up: the node is destroyed and rclpy shut
    down; only the logs still buffered in Python and C stdio are flushed first.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    ctypes.CDLL(None).fflush(None)
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
