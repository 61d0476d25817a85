"""A Python environment like the GPU machines', built from this venv, for the CPU dry runs.

The GPU machines run the benchmarks from a source checkout with ``PYTHONPATH=.``, with a python of
their own that carries torch and a few common packages but nothing of this project: no venv, no
installed copy of the package, no ament index, no ROS. :func:`device_like_python` reproduces that
here: the venv's *base* interpreter (whose prefix holds no ``share/clustvit_ros``) started with
``-s -S`` (no user or system site-packages, so neither this venv's installed copy nor its ROS
wheels are importable), and a folder of links to exactly the distributions the GPU scripts may
use and what they require (:func:`site_folder`), which the caller puts on ``PYTHONPATH``; the
scripts under test put the source tree before it.
"""
from __future__ import annotations

import importlib.metadata as metadata
import sys
from pathlib import Path

from packaging.requirements import Requirement

#: What the GPU scripts import (benchmarks/bench_gpu.py, tools/gpu_checks.py); the GPU machines
#: carry each of them (their image's package list).
DEVICE_PACKAGES = ("torch", "numpy", "opencv-python-headless", "PyYAML", "safetensors", "tqdm", "matplotlib")


def closure(names: tuple[str, ...] = DEVICE_PACKAGES) -> list[metadata.Distribution]:
    """The installed distributions `names` and everything they require (extras left out)."""
    seen: dict[str, metadata.Distribution] = {}
    todo = list(names)
    while todo:
        requirement = Requirement(todo.pop())
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        key = requirement.name.lower().replace("_", "-")
        if key in seen:
            continue
        try:
            dist = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            continue  # an optional platform dependency this venv does not have
        seen[key] = dist
        todo += dist.requires or []
    return list(seen.values())


def site_folder(folder: Path, names: tuple[str, ...] = DEVICE_PACKAGES) -> Path:
    """`folder` filled with links to the top-level entries (packages, modules, shared-library
    folders, dist-info) of the distributions in :func:`closure`."""
    folder.mkdir(parents=True, exist_ok=True)
    for dist in closure(names):
        site = Path(dist.locate_file(""))
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops - {"__pycache__"}:
            link, target = folder / top, site / top
            if target.exists() and not link.exists():
                link.symlink_to(target)
    return folder


def device_like_python() -> list[str]:
    """The command that starts the GPU machines' kind of python here (see the module docstring)."""
    return [getattr(sys, "_base_executable", sys.executable), "-s", "-S"]

