"""The package's installed share directory, as the ament index names it."""
from __future__ import annotations

from ament_index_python.packages import get_package_share_directory


def share_dirs() -> list[str]:
    """``[share/clustvit_ros]`` when the package is found through the ament index, else ``[]``
    (source tree, pip): callers then fall back to :func:`~clustvit_ros.runtime.packaged.share_path`'s
    own candidates."""
    try:
        return [get_package_share_directory("clustvit_ros")]
    except (LookupError, OSError, ValueError):
        return []
