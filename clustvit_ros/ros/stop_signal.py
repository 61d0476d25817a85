"""SIGINT/SIGTERM as a stop request: a flag the main loop polls, never an exception.

Installed before anything slow is imported, so Ctrl-C (once or many times, from a terminal or from
launch's SIGINT-then-SIGTERM) at any moment of start-up, spinning or teardown ends the process
through its normal exit path with code 0, instead of a KeyboardInterrupt escaping from whatever
code the signal happened to land in. Standard library only, so it imports in microseconds.
Signals that arrive before the script's first line (interpreter start-up) still act by default.
"""
from __future__ import annotations

import signal

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignal:
    """Set by the first SIGINT/SIGTERM; later ones are no-ops."""

    def __init__(self) -> None:
        self.requested = False

    def install(self) -> StopSignal:
        """Take over SIGINT and SIGTERM (call from the main thread); returns self."""
        for signum in SIGNALS:
            signal.signal(signum, self._on_signal)
        return self

    def _on_signal(self, signum: int, frame) -> None:
        self.requested = True

    def ignore_further(self) -> None:
        """The process is ending: ignore SIGINT and SIGTERM from now on.

        Python puts its handlers back to the default (death by the signal) while the interpreter
        finalises; an ignored signal stays ignored, so a late Ctrl-C cannot kill the teardown.
        """
        for signum in SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
