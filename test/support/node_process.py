"""Run the installed clustvit_node in its own process, as `ros2 run clustvit_ros clustvit_node` does."""
from __future__ import annotations

import contextlib
import itertools
import os
import subprocess

import rclpy
from rclpy.context import Context

from . import processes
from .installed import executable
from .ros_harness import Harness

NODE_EXECUTABLE = executable("clustvit_node")
_count = itertools.count()


def start_node(namespace: str, *params: str, extra_args: tuple[str, ...] = (),
               cpus: set[int] | None = None) -> subprocess.Popen:
    """Start the node under `namespace` with `-p name:=value` for each of `params`; on `cpus` only
    when given (its CPU affinity, which its threads inherit)."""
    argv = [str(NODE_EXECUTABLE), "--ros-args", "-r", f"__ns:={namespace}", *extra_args]
    for param in params:
        argv += ["-p", param]
    return processes.start(argv, preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)


def unique_namespace(tag: str) -> str:
    return f"/{tag}_{os.getpid()}_{next(_count)}"


@contextlib.contextmanager
def running_node(*params: str, tag: str = "t", outputs=("mask", "stats"), ready_timeout: float = 90.0,
                 publisher_depth: int = 10, image_topic: str | None = None, cpus: set[int] | None = None):
    """A started node plus a Harness talking to it; yields (process, harness); stops both after.

    `image_topic`: remap the node's `image` there (the harness publishes there too). `cpus`: the
    CPUs the node may run on."""
    namespace = unique_namespace(tag)
    proc = start_node(namespace, *params, extra_args=("-r", f"image:={image_topic}") if image_topic else (),
                      cpus=cpus)
    context = Context()
    rclpy.init(context=context)
    harness = Harness(context, f"{namespace}/clustvit", outputs=outputs, publisher_depth=publisher_depth,
                      image_topic=image_topic)
    try:
        try:
            harness.wait_for(lambda: proc.poll() is not None or harness.params.wait_for_services(0.5),
                             ready_timeout, "the node's parameter services")
            assert proc.poll() is None, "the node exited at start-up"
            harness.wait_ready(ready_timeout)
        except AssertionError as exc:
            code, output = processes.stop(proc)
            raise AssertionError(f"{exc}; node exit code {code}; its output:\n{output}") from None
        yield proc, harness
    finally:
        harness.close()
        rclpy.shutdown(context=context)
        processes.stop(proc)
