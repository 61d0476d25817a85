"""The ClustViT node: camera images (and camera_info) in; masks, overlay, FrameStats, the mask's
camera_info and diagnostics out.

A managed (lifecycle) node, with rclpy's lifecycle API as Humble already has it:

- configure: load the model, create the publishers, run one blank frame on the inference thread. A
  model that cannot be loaded or run fails the transition with the reason logged; the node stays
  unconfigured, and can be configured again (after `ros2 param set ... checkpoint ...`, say);
- activate: subscribe to the camera (and its camera_info), segment and publish;
- deactivate: release the subscriptions and stop processing; the publishers go inactive;
- cleanup: free the model (and cached GPU memory) and destroy the publishers;
- shutdown, from any state: all of that; the process then exits with code 0 (see `main.py`).

With `autostart` (the default) `main.py` configures and activates it at start-up, so the node
behaves as a plain node, and a failed configure ends the process with code 1.

The node is thin. The subscription callback only puts the message into a one-slot mailbox and tells
the inference thread, which decodes it, runs `runtime.Engine` with the merge budget that
`runtime.LatencyTarget` chooses from the live settings (the user's own while `latency_target_ms`
is off) and publishes. Every output carries the input's header. Parameters are validated in the set-parameters
callback and the live ones swapped in as one immutable value, so a change applies to the next frame
with no lock around the model.

SIGINT/SIGTERM never raise here: `main.py` turns them into a stop request, which configure's wait
for the warm-up frame polls through `stop_requested`.
"""
from __future__ import annotations

import time
from concurrent.futures import wait
from functools import partial
from typing import Any, Callable

import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.subscription import Subscription
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from clustvit_ros.msg import FrameStats

from ..runtime.engine import Engine, InputRejected
from ..runtime.error_text import error_text
from ..runtime.frame import Frame, FrameTimes, stamp_age_ms
from ..runtime.latency_target import LatencyTarget, TargetState
from ..runtime.options import EngineOptions
from ..runtime.threads import InferenceThreads
from .camera_info import camera_info_topic
from .configured import Configured
from .image_codec import ImageDecodeError, compressed_to_rgb8, to_rgb8
from .inference_thread import InferenceThread
from .latest_slot import LatestSlot
from .outputs import Outputs
from .params import PARAMETERS, SPECS, LiveSettings, check, descriptor
from .share import share_dirs
from .stats import DiagnosticsWindow

NODE_NAME = "clustvit"
LOG_THROTTLE_S = 5.0
# How long shutdown waits for the frame in flight (warm-up included) before abandoning it; launch
# escalates to SIGTERM after 5 s. Cleanup waits as long before it frees the model.
FRAME_WAIT_S = 3.0
STOP_POLL_S = 0.1  # how often waits check for a signal
SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE
RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE,
               "system_default": ReliabilityPolicy.SYSTEM_DEFAULT}


class StartupError(RuntimeError):
    """The node cannot start: a parameter given at start-up is invalid."""


class ClustViTNode(LifecycleNode):
    def __init__(self, stop_requested: Callable[[], bool] = lambda: False, **kwargs: Any) -> None:
        """`stop_requested` is polled while configure waits for the warm-up frame: a signal then fails
        the transition instead of waiting. `kwargs` go to rclpy's Node (context, namespace, ...)."""
        super().__init__(NODE_NAME, **kwargs)
        try:
            for spec in PARAMETERS:
                self.declare_parameter(spec.name, spec.default, descriptor(spec))
        except ParameterException as exc:  # out of its range or of the wrong type
            raise StartupError(f"invalid parameter: {exc}") from exc
        p = self._parameter_values()
        for name, value in p.items():
            if reason := check(name, value):
                raise StartupError(f"invalid parameter: {reason}")
        self.autostart: bool = p["autostart"]
        self._settings = LiveSettings().updated(p)
        self._diag_period = p["diagnostics_period"]
        self._stop_requested = stop_requested
        # Threads: the executor runs the callbacks, the transitions and the diagnostics timer; the
        # inference thread runs the warm-up and the frames. What they share is guarded or replaced
        # whole: `_settings` (LiveSettings) and `_configured` (Configured) are frozen values,
        # `_camera_info` is replaced, `_processing` is a flag; `_slot` and `_diag` take their own locks.
        self._slot: LatestSlot[tuple[Image | CompressedImage, float]] = LatestSlot()
        self._diag = DiagnosticsWindow()
        self._camera_info: CameraInfo | None = None
        self._processing = False  # active: frames are segmented and published
        self._configured: Configured | None = None  # from configure to cleanup
        self._inputs: list[Subscription] = []
        self._pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)  # in every state
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.create_timer(self._diag_period, self._publish_diagnostics)
        self._inference = InferenceThread("clustvit_inference")
        if not self.autostart:
            self.get_logger().info("unconfigured: waiting for the configure transition (autostart is false)")

    @property
    def engine(self) -> Engine | None:
        """The loaded model's engine, from configure to cleanup."""
        configured = self._configured
        return configured.engine if configured is not None else None

    @property
    def lifecycle_state(self) -> str:
        """The current state's label: unconfigured, inactive, active, finalized or a transition's."""
        return self._state_machine.current_state[1]  # rclpy has no public getter (Humble to Kilted)

    def start(self) -> bool:
        """Configure and activate, as `autostart` does; False when either transition failed."""
        return (self.trigger_configure() == SUCCESS and not self._stop_requested()
                and self.trigger_activate() == SUCCESS)

    def _parameter_values(self) -> dict[str, Any]:
        p = {spec.name: self.get_parameter(spec.name).value for spec in PARAMETERS}
        p["input_size"] = list(p["input_size"])
        return p

    # Lifecycle transitions (executor thread) ------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        p = self._parameter_values()
        try:
            # Loaded on the inference thread: building the model runs torch's OpenMP pool, and a
            # process whose first OpenMP thread is not the inference thread runs every frame slower
            # (docs/decisions.md, "all torch work of the node runs on one worker thread").
            engine = self._inference.submit(partial(
                Engine.from_options, EngineOptions.from_values(p), *share_dirs())).result()
        except (OSError, ValueError) as exc:  # missing, corrupt or inconsistent model or labels
            return self._failed("configure", str(exc))
        except Exception as exc:  # anything else the load raises (a CUDA error, ...) fails it too
            return self._failed("configure", f"{type(exc).__name__}: {exc}")
        for warning in engine.warnings:
            self.get_logger().warning(warning)
        config = engine.config
        self._configured = configured = Configured(
            engine=engine, outputs=Outputs(self), threads=InferenceThreads(p["threads"]),
            latency_target=LatencyTarget(),
            qos=QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=p["qos_depth"],
                           reliability=RELIABILITY[p["qos_reliability"]]),
            compressed=p["compressed"], max_pixels=p["max_image_pixels"],
            model_info=(f"{engine.checkpoint.name} ({config.variant}, k={config.k}, ip={config.ip}, "
                        f"{config.num_classes} classes)"))
        self.get_logger().info(f"loaded {configured.model_info} on {engine.device} "
                               f"({configured.dtype_name}): warming up")
        if (reason := self._await_warm_up()) is not None:
            self._release(wait_s=0.0)
            return self._failed("configure", reason)
        return SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # the publishers first
        c = self._configured
        msg_type, topic = (CompressedImage, "image/compressed") if c.compressed else (Image, "image")
        self._inputs = [
            self.create_subscription(msg_type, topic, self._on_image, c.qos),
            self.create_subscription(CameraInfo, camera_info_topic(self.resolve_topic_name("image")),
                                     self._on_camera_info, c.qos)]
        self._processing = True
        self.get_logger().info(
            f"segmenting {self.resolve_topic_name(topic)} with {c.model_info} on {c.engine.device} "
            f"({c.dtype_name}), merge_budget={self._settings.merge_budget}")
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        self.get_logger().info("inactive: the camera is unsubscribed, the model stays loaded")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release(wait_s=FRAME_WAIT_S)
        self.get_logger().info("unconfigured: the model is freed")
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        self._release(wait_s=0.0)  # the process ends: `close` waits for the frame in flight
        self.get_logger().info(f"shut down from {state.label}")
        return SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f"a transition from {state.label} raised: releasing everything, "
                                "back to unconfigured")
        self._stop_processing()
        self._release(wait_s=0.0)
        return SUCCESS

    def _await_warm_up(self) -> str | None:
        """Run the warm-up frame on the inference thread and wait for it; why it failed, or None.

        A signal ends the wait (the load before it is not interruptible).
        """
        if self._stop_requested():
            return "stopped by a signal"
        future = self._inference.submit(self._warm_up)
        while not wait([future], STOP_POLL_S).done:
            if self._stop_requested():
                return "stopped by a signal during the warm-up frame"
        exc = future.exception()
        return None if exc is None else f"the warm-up frame failed: {type(exc).__name__}: {exc}"

    def _stop_processing(self) -> None:
        """Unsubscribe and forget the waiting frame; a frame in flight publishes into inactive publishers."""
        for subscription in self._inputs:
            self.destroy_subscription(subscription)
        self._inputs = []
        self._processing = False
        self._slot.clear()
        self._camera_info = None  # it is not known to be current any more

    def _release(self, wait_s: float) -> None:
        """Free what configure made. Waits up to `wait_s` for the frame in flight first, so that its
        memory goes too."""
        if wait_s > 0 and not self._inference.drain(wait_s):
            self.get_logger().warning(f"the frame in flight did not finish within {wait_s:g} s: "
                                      "its memory is freed when it does")
        configured, self._configured = self._configured, None
        if configured is not None:
            configured.outputs.destroy()
            configured.engine.close()

    def _failed(self, transition: str, reason: str) -> TransitionCallbackReturn:
        self.get_logger().error(f"{transition} failed: {error_text(reason)}")
        return FAILURE

    # Executor thread -------------------------------------------------------------------------

    def _on_image(self, msg: Image | CompressedImage) -> None:
        if self._settings.enabled and self._slot.put((msg, time.monotonic())):
            self._inference.submit(self._process_newest)
            # Hand the GIL to the inference thread now rather than when this thread next blocks, after
            # its whole wait-set rebuild (docs/decisions.md, "node overhead: the GIL hand-off").
            time.sleep(0)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    def _on_set_parameters(self, params) -> SetParametersResult:
        changes = {param.name: param.value for param in params}
        state = self.lifecycle_state
        for name, value in changes.items():
            if name in SPECS and SPECS[name].configure and state != "unconfigured":
                steps = "deactivate, then cleanup" if state == "active" else "cleanup"
                return SetParametersResult(successful=False, reason=(
                    f"{name} is read at configure: it can change only while the node is unconfigured, "
                    f"and it is {state} (ros2 lifecycle set {self.get_fully_qualified_name()} {steps})"))
            if reason := check(name, value):
                return SetParametersResult(successful=False, reason=reason)
        settings = self._settings.updated(changes)
        if not settings.enabled:
            self._slot.clear()
        self._settings = settings
        return SetParametersResult(successful=True)

    def _publish_diagnostics(self) -> None:
        s, c = self._settings, self._configured
        target = c.latency_target.state if c is not None and s.latency_target_ms > 0 else None
        extra = {"lifecycle_state": self.lifecycle_state, "enabled": str(s.enabled),
                 "merge_budget": f"{s.merge_budget:g}", "merge_bias": f"{s.merge_bias:g}",
                 "latency_target_ms": f"{s.latency_target_ms:g}",
                 "latency_target": _target_text(s.latency_target_ms, target),
                 "frames_received": str(self._slot.received)}
        if c is not None:
            extra.update(device=str(c.engine.device), dtype=c.dtype_name, model=c.model_info,
                         threads=c.threads.describe())
        status = self._diag.status(self._diag_period, self._slot.dropped, extra)
        if target is not None and target.mode == "saturated" and extra["lifecycle_state"] == "active":
            status.level = max(status.level, DiagnosticStatus.WARN)
            status.message = target.reason + ("" if status.message == "segmenting" else f"; {status.message}")
        status.name = f"{self.get_fully_qualified_name()}: segmentation"
        status.hardware_id = str(c.engine.device) if c is not None else ""
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._pub_diag.publish(array)

    # Inference thread ------------------------------------------------------------------------

    def _warm_up(self) -> None:
        """Choose the thread count and run one blank frame here, before the first camera frame.

        The first frame pays for allocations and kernel selection. Like the model load before it,
        it runs on this thread, the first and only one of the process to use torch's thread pool
        (another thread would run torch slower, docs/decisions.md, "all torch work of the node runs
        on one worker thread").
        """
        c = self._configured
        c.threads.before_frame()
        start = time.monotonic()
        c.engine.run(np.zeros((*c.engine.input_size, 3), np.uint8), self._settings.budget)
        self.get_logger().info(f"ready: warm-up frame {(time.monotonic() - start) * 1e3:.0f} ms, "
                               f"{c.threads.describe()} inference threads")

    def _process_newest(self) -> None:
        """Segment and publish the newest frame, if one is waiting."""
        item, c, settings = self._slot.take(), self._configured, self._settings
        if item is None or c is None or not settings.enabled:
            return
        c.threads.before_frame()
        try:
            self._process(c, *item, settings)
        except (ImageDecodeError, InputRejected) as exc:
            self._report("input", f"bad input image: {exc}")
        except torch.cuda.OutOfMemoryError as exc:
            c.engine.release_cached_memory()
            self._report("processing", f"out of memory on {c.engine.device}, frame skipped: {exc}")
        except Exception as exc:  # a frame that fails must not stop the node
            if self._processing:  # else a transition took the model or the publishers away mid-frame
                self._report("processing", f"processing failed: {type(exc).__name__}: {exc}")

    def _process(self, c: Configured, msg: Image | CompressedImage, received: float,
                 settings: LiveSettings) -> None:
        started = time.monotonic()
        rgb = compressed_to_rgb8(msg, c.max_pixels) if c.compressed else to_rgb8(msg, c.max_pixels)
        decoded = time.monotonic()
        budget = c.latency_target.budget(settings.latency_target_ms, settings.budget)
        frame = Frame(rgb, c.engine.run(rgb, budget), c.engine.classes.palette)
        segmented = time.monotonic()
        header = msg.header
        c.outputs.publish_images(frame, header, self._camera_info, settings)
        done = time.monotonic()
        times = FrameTimes.from_marks(received, started, decoded, segmented, done, self._stamp_age_ms(header))
        c.outputs.publish_cost(FrameStats(header=header, **frame.stats(times, budget, self._slot.dropped)),
                               settings)
        was_saturated = c.latency_target.state.mode == "saturated"
        stats = frame.result.stats
        c.latency_target.observe(done, times.latency_ms, frame.result.gflops, stats.kept_tokens[0],
                                 stats.patch_tokens)
        if c.latency_target.state.mode == "saturated" and not was_saturated:
            self.get_logger().warning(f"latency_target_ms: {c.latency_target.state.reason}",
                                      throttle_duration_sec=LOG_THROTTLE_S)
        self._diag.add_frame(times, frame.result.gflops)

    def _stamp_age_ms(self, header) -> float:
        return stamp_age_ms(self.get_clock().now().nanoseconds, header.stamp.sec, header.stamp.nanosec)

    def _report(self, kind: str, text: str) -> None:
        text = error_text(text)
        self._diag.add_error(kind, text)
        self.get_logger().error(text, throttle_duration_sec=LOG_THROTTLE_S)

    # -----------------------------------------------------------------------------------------

    def close(self, timeout: float = FRAME_WAIT_S) -> bool:
        """Shut the node down from whatever state it is in and stop the inference thread after the
        frame in flight, waiting up to `timeout` s; call before destroy_node().

        Returns False when that frame is still running: it is abandoned, and the caller must not let
        the interpreter finalise while the inference thread is inside torch (see `main.py`).
        """
        if self.lifecycle_state in ("unconfigured", "inactive", "active"):
            self.trigger_shutdown()
        return self._inference.close(timeout)


def _target_text(target_ms: float, state: TargetState | None) -> str:
    """The latency target's state for /diagnostics: off, holding ... or saturated: ..."""
    if target_ms <= 0:
        return "off"
    if state is None or state.mode == "off":  # on, and no frame has run with it yet
        return f"holding {target_ms:g} ms: no frame yet"
    return state.describe()
