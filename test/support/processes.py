"""Start and stop test subprocesses that must never outlive a test."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
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
