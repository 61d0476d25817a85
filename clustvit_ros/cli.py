"""The ``clustvit`` command. Each subcommand is a module exposing ``add_parser(subparsers)``, which
registers its parser with ``func=handler(args) -> exit code``: ``commands/`` for the model layer's
(which has no argparse or printing of its own), the tools' own modules for the rest. To add one,
append its module to :data:`SUBCOMMANDS`.
"""
from __future__ import annotations

import argparse
import importlib
import sys

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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValueError as exc:  # bad input files or settings (CheckpointError is a ValueError)
        print(f"clustvit {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
