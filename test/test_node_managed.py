"""clustvit_node as a managed (lifecycle) node: its states and transitions driven with the real
`ros2 lifecycle` and `ros2 param` CLI against the installed node, over loopback DDS."""
from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter

from clustvit_ros.ros.params import PARAMETERS, descriptor
from support import processes
from support.models import make_checkpoint
from support.node_process import NODE_EXECUTABLE, unique_namespace
from support.ros2_tools import ROS2, lifecycle, requires_ros2, ros2, stop_daemon
from support.ros_harness import Harness, rgb_image

SUCCESSFUL = "Transitioning successful"
EXIT_S = 20.0  # generous on a loaded machine; the node itself waits at most 3 s for a frame
# About 0.5 TFLOP a frame at 1024 x 1024: a warm-up frame of seconds on any CPU (test_node_signals.py).
ENDLESS_MODEL = dict(embed_dim=384, depth=12, num_heads=6, mlp_hidden=1536, cluster_hidden=384)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture
def daemon():
    """No ros2 CLI daemon left from earlier runs; the one the CLI starts is stopped afterwards."""
    stop_daemon()
    yield
    stop_daemon()


class ManagedNode:
    """The installed node started as `ros2 run` starts it, its output in a log file, plus a Harness."""

    def __init__(self, context: Context, log: Path, *params: str, tag: str):
        namespace = unique_namespace(tag)
        self.fqn = f"{namespace}/clustvit"
        self.image_topic = f"{namespace}/image"
        self.log = log
        argv = [str(NODE_EXECUTABLE), "--ros-args", "-r", f"__ns:={namespace}"]
        for param in ("device:=cpu", "threads:=1", "diagnostics_period:=0.2", *params):
            argv += ["-p", param]
        self.proc = processes.start_logged(argv, log)
        self.harness = Harness(context, self.fqn, outputs=("mask",))

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        assert self.proc.poll() is None, f"the node exited with {self.proc.returncode}:\n{self.output}"
        return True

    def state(self) -> str:
        return lifecycle("get", self.fqn).stdout.strip()

    def set(self, transition: str) -> subprocess.CompletedProcess:
        return lifecycle("set", self.fqn, transition)

    def transition(self, transition: str, state: str) -> None:
        result = self.set(transition)
        assert result.stdout.strip() == SUCCESSFUL, f"{result.stdout}{result.stderr}\n{self.output}"
        assert self.state() == state

    def camera_subscribers(self) -> int:
        """The node's subscriptions to its image topic, as `ros2 topic info` counts them."""
        out = ros2("topic", "info", self.image_topic).stdout
        match = re.search(r"Subscription count: (\d+)", out)
        return int(match.group(1)) if match else 0

    def segments(self, stamp: tuple[int, int]) -> None:
        """A fed image comes back as a mask."""
        image = rgb_image(48, 64, seed=stamp[0])
        republish = lambda: self.alive() and self.harness.publish(image, stamp)  # noqa: E731
        self.harness.output_for("mask", stamp, 60, republish=republish)

    def ignores(self, sec: int) -> None:
        """Images fed now (stamped `sec`) come back as no mask."""
        image = rgb_image(48, 64)
        for i in range(5):
            self.harness.publish(image, (sec, i))
            time.sleep(0.1)
        time.sleep(1.5)
        assert not [m for m in self.harness.messages("mask") if m.header.stamp.sec == sec]

    def expect_exit(self, code: int = 0) -> str:
        assert processes.wait_exit(self.proc, EXIT_S), f"still running after {EXIT_S} s:\n{self.output}"
        output = self.output
        assert self.proc.returncode == code, output
        assert "Traceback" not in output and "terminate called" not in output, output
        return output

    def close(self) -> None:
        self.harness.close()
        processes.kill_group(self.proc)


@contextlib.contextmanager
def managed_node(context: Context, log: Path, *params: str, tag: str = "managed"):
    node = ManagedNode(context, log, *params, tag=tag)
    try:
        yield node
    finally:
        node.close()


def _wait(predicate, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def _diagnostics(node: ManagedNode, state: str) -> dict[str, str | None]:
    """The node's newest /diagnostics values once it reports `state`."""
    h = node.harness
    h.wait_for(lambda: node.alive() and h.diagnostics_value("lifecycle_state") == state, 15, f"diagnostics in {state}")
    return {key: h.diagnostics_value(key) for key in ("lifecycle_state", "device", "model")}


@requires_ros2
def test_configure_activate_deactivate_cleanup_shutdown_with_the_cli(checkpoint, daemon, rclpy_context, tmp_path):
    with managed_node(rclpy_context, tmp_path / "node.log", f"checkpoint:={checkpoint}", "autostart:=false") as node:
        assert node.state() == "unconfigured [1]"
        assert _diagnostics(node, "unconfigured") == {"lifecycle_state": "unconfigured", "device": None, "model": None}
        assert node.harness.image_pub.get_subscription_count() == 0 and node.camera_subscribers() == 0
        assert "ready: warm-up frame" not in node.output  # no model yet

        node.transition("configure", "inactive [2]")
        assert "ready: warm-up frame" in node.output  # configure warmed the model up
        assert _diagnostics(node, "inactive")["model"].startswith("tiny.safetensors")
        node.ignores(1)  # not subscribed yet
        assert node.camera_subscribers() == 0

        node.transition("activate", "active [3]")
        node.segments((2, 0))
        _wait(lambda: node.camera_subscribers() == 1, "ros2 topic info to count the node's subscription")

        node.transition("deactivate", "inactive [2]")
        _wait(lambda: node.camera_subscribers() == 0, "the subscription to be released")
        node.harness.wait_for(lambda: node.harness.image_pub.get_subscription_count() == 0, 15, "no subscriber")
        node.ignores(3)

        node.transition("activate", "active [3]")
        node.segments((4, 0))

        node.transition("deactivate", "inactive [2]")
        node.transition("cleanup", "unconfigured [1]")
        assert "unconfigured: the model is freed" in node.output
        assert _diagnostics(node, "unconfigured")["model"] is None

        assert node.set("shutdown").stdout.strip() == SUCCESSFUL
        output = node.expect_exit(0)
    assert "shut down from unconfigured" in output


@requires_ros2
def test_a_failed_configure_says_why_and_leaves_the_node_unconfigured(checkpoint, daemon, rclpy_context, tmp_path):
    missing = tmp_path / "missing.safetensors"
    with managed_node(rclpy_context, tmp_path / "node.log", f"checkpoint:={missing}", "autostart:=false") as node:
        result = node.set("configure")
        assert "Transitioning failed" in result.stderr, result.stdout + result.stderr
        assert re.search(rf"configure failed: .*{re.escape(str(missing))}", node.output), node.output
        assert node.state() == "unconfigured [1]" and node.alive()

        # in unconfigured a configure parameter may change; then configure succeeds
        set_checkpoint = ros2("param", "set", node.fqn, "checkpoint", str(checkpoint))
        assert set_checkpoint.stdout.strip() == "Set parameter successful", set_checkpoint.stderr
        node.transition("configure", "inactive [2]")

        # once configured it may not: the reason says what to do
        refused = ros2("param", "set", node.fqn, "checkpoint", str(missing))
        assert "Setting parameter failed: checkpoint is read at configure" in refused.stderr, refused.stderr
        assert f"ros2 lifecycle set {node.fqn} cleanup" in refused.stderr, refused.stderr
        node.transition("activate", "active [3]")
        node.segments((5, 0))
        assert processes.stop(node.proc, signal.SIGINT)[0] == 0


@requires_ros2
@pytest.mark.parametrize("state", ["unconfigured", "inactive", "active"])
def test_the_shutdown_transition_ends_the_process_with_code_0(checkpoint, daemon, rclpy_context, tmp_path, state):
    autostart = "true" if state == "active" else "false"
    with managed_node(rclpy_context, tmp_path / "node.log", f"checkpoint:={checkpoint}",
                      f"autostart:={autostart}") as node:
        if state == "inactive":
            node.transition("configure", "inactive [2]")
        if state == "active":
            node.segments((6, 0))  # autostart: configured and active
        assert node.state() == f"{state} [{('unconfigured', 'inactive', 'active').index(state) + 1}]"
        result = node.set("shutdown")
        assert result.stdout.strip() == SUCCESSFUL, result.stderr
        output = node.expect_exit(0)
    assert f"shut down from {state}" in output


@requires_ros2
@pytest.mark.parametrize("state, sig", [("unconfigured", signal.SIGINT), ("inactive", signal.SIGTERM),
                                        ("reactivated", signal.SIGINT)])
def test_signals_end_the_node_with_code_0_in_every_state(checkpoint, daemon, rclpy_context, tmp_path, state, sig):
    """Active after autostart is covered by test_node_signals.py; here the states a lifecycle manager
    leads to, the signal twice each time."""
    with managed_node(rclpy_context, tmp_path / "node.log", f"checkpoint:={checkpoint}",
                      f"autostart:={'true' if state == 'reactivated' else 'false'}") as node:
        if state == "inactive":
            node.transition("configure", "inactive [2]")
        elif state == "reactivated":
            node.transition("deactivate", "inactive [2]")
            node.transition("activate", "active [3]")
            node.segments((7, 0))
        else:
            assert node.state() == "unconfigured [1]"
        node.proc.send_signal(sig)
        time.sleep(0.02)
        node.proc.send_signal(sig)
        node.expect_exit(0)


@requires_ros2
def test_a_signal_during_a_configure_asked_for_with_the_cli_ends_the_node(daemon, rclpy_context, tmp_path):
    """The executor is busy in the configure transition (a warm-up frame of seconds): a signal still
    ends the node promptly, with code 0, abandoning that frame."""
    slow = make_checkpoint(tmp_path / "endless.safetensors", **ENDLESS_MODEL)
    with managed_node(rclpy_context, tmp_path / "node.log", f"checkpoint:={slow}", "autostart:=false",
                      "input_size:=[1024,1024]", "merge_budget:=0.0") as node:
        assert node.state() == "unconfigured [1]"
        cli = processes.start_logged([ROS2, "lifecycle", "set", node.fqn, "configure"], tmp_path / "cli.log")
        try:
            processes.wait_for_text(node.proc, node.log, "warming up", 90)
            node.proc.send_signal(signal.SIGINT)
            output = node.expect_exit(0)
        finally:
            processes.kill_group(cli)
    assert "configure failed: stopped by a signal during the warm-up frame" in output, output
    assert "ready: warm-up frame" not in output, "the warm-up frame finished: this test needs a slower one"
    assert "abandoned" in output, output


def test_configure_parameters_are_writable_and_start_up_ones_read_only():
    kinds = {spec.name: (spec.live, spec.configure) for spec in PARAMETERS}
    assert [name for name, kind in kinds.items() if kind == (False, False)] == ["diagnostics_period", "autostart"]
    for spec in PARAMETERS:
        assert descriptor(spec).read_only == (not spec.live and not spec.configure), spec.name


def test_one_inference_thread_serves_every_configure(checkpoint, monkeypatch):
    """configure/cleanup cycles reuse the node's one inference thread, which is the only thread to
    load and run the model (torch on a second thread runs every frame slower: docs/decisions.md)."""
    from clustvit_ros.ros.node import ClustViTNode
    from clustvit_ros.runtime.engine import Engine

    threads: list[str] = []
    loaded_on: list[str] = []
    real_run, real_init = Engine.run, Engine.__init__

    def run(self, *args, **kwargs):
        threads.append(threading.current_thread().name)
        return real_run(self, *args, **kwargs)

    def init(self, *args, **kwargs):
        loaded_on.append(threading.current_thread().name)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(Engine, "run", run)
    monkeypatch.setattr(Engine, "__init__", init)
    context = Context()
    rclpy.init(context=context)
    node = ClustViTNode(context=context, namespace=unique_namespace("thread"),
                        parameter_overrides=[Parameter("checkpoint", value=str(checkpoint)),
                                             Parameter("autostart", value=False)])
    try:
        assert node.lifecycle_state == "unconfigured" and node.engine is None
        for cycle in range(3):
            assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
            engine = node.engine
            assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
            assert node.engine is None and not hasattr(engine, "model"), "cleanup kept the model"
        assert len(threads) == 3 and set(threads) == {"clustvit_inference"}, threads
        assert loaded_on == ["clustvit_inference"] * 3, loaded_on
        assert [t.name for t in threading.enumerate()].count("clustvit_inference") == 1
    finally:
        assert node.close()
        node.destroy_node()
        rclpy.shutdown(context=context)
    assert "clustvit_inference" not in [t.name for t in threading.enumerate()]


def test_an_in_process_node_starts_processes_and_stops(checkpoint, rclpy_context):
    """`start()` is what autostart runs; a frame goes through the inference thread to the outputs."""
    from clustvit_ros.ros.node import ClustViTNode

    node = ClustViTNode(context=rclpy_context, namespace=unique_namespace("inproc"),
                        parameter_overrides=[Parameter("checkpoint", value=str(checkpoint))])
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    harness = Harness(rclpy_context, node.get_fully_qualified_name())
    try:
        assert node.autostart and node.start() and node.lifecycle_state == "active"
        spinner.start()
        harness.wait_ready()
        harness.output_for("mask", (8, 0), republish=lambda: harness.publish(rgb_image(), (8, 0)))
    finally:
        harness.close()
        executor.shutdown()
        assert node.close() and node.lifecycle_state == "finalized"
        node.destroy_node()
