"""Start and stop test subprocesses that must never outlive a test."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def start(argv: list[str], **kwargs) -> subprocess.Popen:
    """Start `argv` in its own process group, output captured, environment inherited."""
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, **kwargs)


def start_module(module: str, *args: str, **kwargs) -> subprocess.Popen:
    """`python -m module args`, by default from the repository root (source tree first on sys.path)."""
    kwargs.setdefault("cwd", REPO)
    return start([sys.executable, "-m", module, *args], **kwargs)


def wait_exit(proc: subprocess.Popen, timeout: float) -> bool:
    """Wait up to `timeout` s for `proc` to exit on its own; True when it did."""
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return False
    return True


def stop(proc: subprocess.Popen, sig: int = signal.SIGINT, timeout: float = 15.0) -> tuple[int, str]:
    """Send `sig`, wait, kill the group if it does not exit; return (exit code, output)."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    return proc.returncode, out or ""


def start_logged(argv: list[str], log: Path, **kwargs) -> subprocess.Popen:
    """Start `argv` in its own process group with stdout and stderr going to the file `log`.

    A file, not a pipe: a chatty process (ros2 launch) never blocks on a full pipe, and the test can
    read what it has written so far while it runs.
    """
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    with open(log, "wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kwargs)


def wait_for_text(proc: subprocess.Popen, log: Path, text: str, timeout: float) -> None:
    """Until `text` appears in `log`; fails if `proc` exits first or `timeout` s pass."""
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        if proc.poll() is not None:
            raise AssertionError(f"exited with {proc.returncode} before printing {text!r}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {text!r} within {timeout} s:\n{log.read_text()}")
        time.sleep(0.02)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL whatever is left of `proc`'s process group (a test's last resort)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def group_alive(pgid: int) -> bool:
    """Whether any process of process group `pgid` still exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def ctrl_c(proc: subprocess.Popen, timeout: float = 15.0) -> int | None:
    """SIGINT to `proc`'s whole process group, as a terminal's Ctrl-C; its exit code, or None when it
    had to be killed after `timeout` s."""
    try:
        os.killpg(proc.pid, signal.SIGINT)
    except ProcessLookupError:
        pass
    if wait_exit(proc, timeout):
        return proc.returncode
    kill_group(proc)
    return None


def handles_sigterm(pid: int) -> bool:
    """Whether `pid` catches SIGTERM (Python leaves it at the default until a script installs a handler)."""
    status = Path(f"/proc/{pid}/status").read_text()
    caught = int(next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1], 16)
    return bool(caught & (1 << (signal.SIGTERM - 1)))
