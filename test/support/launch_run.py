"""`ros2 launch clustvit_ros FILE ARGS` run as a user runs it: in its own process group, stopped by
Ctrl-C delivered to the whole group as a terminal delivers it."""
from __future__ import annotations

import os
import pty
import re
import signal
import time
from pathlib import Path

from . import processes
from .ros2_tools import ROS2

LAUNCH_GRACE_S = 5.0  # launch escalates to SIGTERM when a process outlives a Ctrl-C by this much
BAD_SIGNS = ("process has died", "escalating to", "Traceback", "terminate called", "orphaned")


class Launch:
    """One running `ros2 launch`; use as a context manager (the group is killed on the way out)."""

    def __init__(self, launch_file: str, arguments: dict[str, str], log: Path, env: dict | None = None):
        """Its stdin is a terminal, as in a shell: without one, launch runs non-interactively and
        forwards a Ctrl-C to its processes itself, so each would get it twice."""
        self.log = log
        argv = [ROS2, "launch", "clustvit_ros", launch_file, *[f"{k}:={v}" for k, v in arguments.items()]]
        self._terminal = pty.openpty()
        self.proc = processes.start_logged(argv, log, env=env, stdin=self._terminal[1])
        self.seconds_to_exit: float | None = None

    def __enter__(self) -> Launch:
        return self

    def __exit__(self, *exc) -> None:
        processes.kill_group(self.proc)
        for fd in self._terminal:
            os.close(fd)

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def running(self) -> bool:
        """True while `ros2 launch` runs; raises with its output once it has exited."""
        if self.proc.poll() is not None:
            raise AssertionError(f"ros2 launch exited with {self.proc.returncode}:\n{self.output}")
        return True

    def wait_for(self, text: str, timeout: float = 60.0) -> None:
        processes.wait_for_text(self.proc, self.log, text, timeout)

    def pids(self) -> dict[str, int]:
        """Launched process name (e.g. clustvit_node-2) -> pid, from launch's own log lines."""
        return {name: int(pid) for name, pid in re.findall(r"\[INFO\] \[([\w.-]+)\]: process started with pid \[(\d+)\]",
                                                            self.output)}

    def ctrl_c(self, presses: int = 1, gap: float = 0.05) -> None:
        """SIGINT to the whole process group, `presses` times `gap` s apart until every launched
        process has ended (a user pressing Ctrl-C again and again), then wait for launch to exit.

        The presses stop there, not when `ros2 launch` itself exits: its own interpreter exit is not
        this package's code, and Python puts SIGINT back to the default while it finalises, so a
        press in that last moment kills `ros2 launch` (-2) after everything it ran ended cleanly.
        """
        start = time.monotonic()
        for _ in range(presses):
            try:
                os.killpg(self.proc.pid, signal.SIGINT)
            except ProcessLookupError:
                break
            if processes.wait_exit(self.proc, gap) or self._all_ended():
                break
        if processes.wait_exit(self.proc, 2 * LAUNCH_GRACE_S + 5):
            self.seconds_to_exit = time.monotonic() - start

    def _all_ended(self) -> bool:
        """Whether every process launch started has ended: launch logged it, or it is already gone
        or a zombie (under load launch may log an exit only after the next press would land)."""
        ended = set(re.findall(r"process has (?:finished cleanly|died) \[pid (\d+)", self.output))
        return all(str(pid) in ended or not _running(pid) for pid in self.pids().values())

    def assert_clean_exit(self) -> None:
        """Exit 0 within launch's grace, every started process finished cleanly, nothing left running."""
        output = self.output
        assert self.seconds_to_exit is not None, f"ros2 launch still running after Ctrl-C:\n{output}"
        left = processes.group_alive(self.proc.pid)
        assert self.proc.returncode == 0, f"ros2 launch exited with {self.proc.returncode}:\n{output}"
        started = self.pids()
        finished = output.count("process has finished cleanly")
        assert started and finished == len(started), f"{len(started)} started, {finished} finished cleanly:\n{output}"
        assert not [s for s in BAD_SIGNS if s in output], output
        assert self.seconds_to_exit < LAUNCH_GRACE_S, f"took {self.seconds_to_exit:.1f} s:\n{output}"
        assert not left, f"processes of the launch still running after it exited:\n{output}"


def _running(pid: int) -> bool:
    """Whether process `pid` exists and has not exited (a zombie has)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")
