"""Entry point of `ros2 run clustvit_ros clustvit_node`: the node's process, from rclpy's start to an
exit code, with signal-safe shutdown in every lifecycle state."""
from __future__ import annotations

import ctypes
import os
import sys
import time
import traceback

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions

from ..runtime.error_text import error_text
from .node import FRAME_WAIT_S, NODE_NAME, STOP_POLL_S, ClustViTNode, StartupError
from .stop_signal import StopSignal

# After the shutdown transition, how long the node still spins before it is destroyed, so that the
# reliable reply to `ros2 lifecycle set` can still be resent if its first copy was lost (the CLI
# waits for it without a timeout).
LINGER_S = 0.25


def main(args: list[str] | None = None, stop: StopSignal | None = None) -> int:
    """Run the node until a signal or its shutdown transition; `args` go to rclpy (--ros-args ...).

    SIGINT/SIGTERM only set `stop` (the script installs it before importing torch), which the spin
    loop and configure's warm-up wait poll, and are ignored once the node is ending, so any number
    of them at any moment (model load, warm-up, inference, any lifecycle state, teardown) ends it with
    code 0. The shutdown transition (`ros2 lifecycle set /clustvit shutdown`) ends it with code 0 too.
    rclpy gets a context of its own and installs no signal handlers. Shutdown waits for the frame in
    flight up to FRAME_WAIT_S.
    """
    stop = stop or StopSignal().install()
    context = Context()
    rclpy.init(args=args, context=context, signal_handler_options=SignalHandlerOptions.NO)
    try:
        node = ClustViTNode(stop_requested=lambda: stop.requested, context=context)
    except StartupError as exc:
        rclpy.logging.get_logger(NODE_NAME).fatal(f"cannot start: {error_text(exc)}")
        code, finished = 1, True
    else:
        code = _run(node, stop)
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


def _run(node: ClustViTNode, stop: StopSignal) -> int:
    """Autostart when asked, then spin; the exit code (1 when autostart could not start the node)."""
    if node.autostart and not node.start() and not stop.requested:
        node.get_logger().fatal("cannot start: autostart could not configure and activate the node "
                                "(the reason is above)")
        return 1
    return _spin_until_stopped(node, stop)


def _spin_until_stopped(node: ClustViTNode, stop: StopSignal) -> int:
    """Spin `node` until `stop` or its shutdown transition; returns the exit code (1 when a callback failed)."""
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    try:
        while not stop.requested and node.lifecycle_state != "finalized":
            executor.spin_once(timeout_sec=STOP_POLL_S)
        linger_until = time.monotonic() + LINGER_S
        while not stop.requested and time.monotonic() < linger_until:
            executor.spin_once(timeout_sec=STOP_POLL_S)
    except Exception:  # the inference thread must still be stopped, so this must not escape past main's close()
        node.get_logger().fatal(f"stopping after an unexpected error:\n{traceback.format_exc()}")
        return 1
    finally:
        executor.shutdown()
    return 0


def _exit_now(code: int) -> None:
    """End the process without finalising the interpreter, the inference thread still inside torch.

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
