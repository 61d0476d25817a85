"""The node's one inference thread: every torch call of the node, the model load included, runs on it."""
from __future__ import annotations

import queue
import threading
from concurrent.futures import Future, wait
from typing import Any, Callable


class InferenceThread:
    """Runs submitted jobs one at a time, in order, on one daemon thread that lives as long as the node.

    One thread for the node's whole life, across any number of configure/cleanup cycles: once a
    thread of a process has used torch's OpenMP pool, every other non-main thread that runs torch
    runs much slower (docs/decisions.md, "all torch work of the node runs on one worker thread"), so
    a fresh thread per configure would slow every frame after the first cleanup.
    """

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Future, Callable[..., Any], tuple] | None] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        """Queue `fn(*args)`; the future gets its result or exception."""
        future: Future = Future()
        self._jobs.put((future, fn, args))
        return future

    def drain(self, timeout: float) -> bool:
        """Wait up to `timeout` s for every job submitted so far to finish; True when they have."""
        return wait([self.submit(_nothing)], timeout).not_done == set()

    def close(self, timeout: float) -> bool:
        """Let the job in flight finish, waiting up to `timeout` s; queued jobs do not run.

        Returns False when that job is still running: the caller must then not let the interpreter
        finalise while this thread is inside torch.
        """
        self._closed = True
        self._jobs.put(None)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while not self._closed and (job := self._jobs.get()) is not None:
            future, fn, args = job
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except Exception as exc:  # handed to whoever waits on the future
                    future.set_exception(exc)
            del job, future, fn, args  # an engine passed as an argument must not outlive its job


def _nothing() -> None:
    """A job that marks its place in the queue."""
