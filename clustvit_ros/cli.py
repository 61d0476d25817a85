"""The ``clustvit`` command. Each subcommand is a module exposing ``add_parser(subparsers)``, which
registers its parser with ``func=handler(args) -> exit code``: ``commands/`` for the model layer's
(which has no argparse or printing of its own), the tools' own modules for the rest. To add one,
append its module to :data:`SUBCOMMANDS`.
"""
from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

from .runtime.error_text import error_text

SUBCOMMANDS = (
    "clustvit_ros.commands.flops",  # clustvit flops
    "clustvit_ros.commands.convert",  # clustvit convert
    "clustvit_ros.ros.bag",  # clustvit bag
    "clustvit_ros.train.train",  # clustvit train
    "clustvit_ros.train.evaluate",  # clustvit eval
    "clustvit_ros.train.sweep",  # clustvit sweep
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clustvit", description="ClustViT segmentation tools")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError:
            if name.startswith("clustvit_ros.ros."):
                continue  # a ROS-free install (pip install .) has no ros/ layer: no `clustvit bag`
            raise
        module.add_parser(subparsers)
    return parser


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A stop signal, raised where the command was: what it has half written is removed on the way
    out (``bag_output.replacing``), as for Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; its exit code. Bad input files or settings and files that cannot be read
    or written (ValueError, CheckpointError included, and OSError) are one line and exit code 2;
    SIGINT, SIGTERM and SIGHUP one line and 128 + the signal's number."""
    args = build_parser().parse_args(argv)
    try:
        with _signals_raise():
            return int(args.func(args) or 0)
    except (ValueError, OSError) as exc:
        print(f"clustvit {args.command}: error: {error_text(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Interrupted, or a SIGINT before the handlers were installed
        signum = getattr(exc, "signum", signal.SIGINT)
        print(f"clustvit {args.command}: stopped by {signal.Signals(signum).name}", file=sys.stderr)
        return 128 + signum


@contextmanager
def _signals_raise() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP raise :class:`Interrupted` in the main thread while the block
    runs; after the first, the others are ignored so that nothing interrupts the clean-up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame) -> None:
        for other in STOP_SIGNALS:
            signal.signal(other, signal.SIG_IGN)
        raise Interrupted(signum)

    previous = {signum: signal.signal(signum, stop) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


if __name__ == "__main__":
    sys.exit(main())
