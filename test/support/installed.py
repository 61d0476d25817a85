"""Where the installed package is, found through the ament index as `ros2 run` finds it.

Works for the venv build (AMENT_PREFIX_PATH=.venv), a colcon workspace (install/clustvit_ros) and
a system install (/opt/ros/<distro>) alike; never assume the interpreter's prefix.
"""
from __future__ import annotations

from pathlib import Path

from ament_index_python.packages import get_package_prefix, get_package_share_directory

PACKAGE = "clustvit_ros"


def executable(name: str) -> Path:
    """lib/clustvit_ros/<name>: what `ros2 run clustvit_ros <name>` and launch_ros start."""
    return Path(get_package_prefix(PACKAGE)) / "lib" / PACKAGE / name


def share() -> Path:
    """share/clustvit_ros: launch files, parameter files, the packaged model."""
    return Path(get_package_share_directory(PACKAGE))
