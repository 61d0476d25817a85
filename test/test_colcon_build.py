"""`colcon build` as a ROS 2 user runs it, in a temporary workspace on top of this environment
(the venv, or a sourced ROS 2), with and without --symlink-install; then an executable runs from
the install space and must come up (`ros2 run` when the ROS 2 CLI is there)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from support import processes
from support.processes import REPO
from support.ros2_tools import AVAILABLE as HAVE_ROS2_CLI, ROS2

COLCON = shutil.which("colcon", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
pytestmark = pytest.mark.skipif(COLCON is None, reason="needs colcon (pip install -r requirements-dev.txt)")


def _environment() -> dict[str, str]:
    """This environment as the underlay: its prefixes for CMake, its interpreter first on PATH."""
    env = dict(os.environ)
    env["CMAKE_PREFIX_PATH"] = os.pathsep.join(p for p in (env["AMENT_PREFIX_PATH"], env.get("CMAKE_PREFIX_PATH")) if p)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
    return env


def _node_pid(pid: int) -> int:
    """The clustvit_node process among `pid` and its children (`ros2 run` starts it as a child)."""
    family = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return next(p.pid for p in family if p.cmdline()[1:2] and p.cmdline()[1].endswith("lib/clustvit_ros/clustvit_node"))


@pytest.mark.parametrize("symlink_install", [False, True], ids=["copy", "symlink-install"])
def test_colcon_build_installs_a_package_whose_node_runs(tmp_path, symlink_install):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "clustvit_ros").symlink_to(REPO)  # as a clone in src/
    build = [COLCON, "build", *(["--symlink-install"] if symlink_install else []),
             "--cmake-args", "-DBUILD_TESTING=OFF", f"-DPython3_EXECUTABLE={sys.executable}"]
    result = subprocess.run(build, cwd=tmp_path, env=_environment(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    lib = tmp_path / "install" / "clustvit_ros" / "lib" / "clustvit_ros"
    for name in ("clustvit_node", "demo_camera", "clustvit"):
        assert os.access(lib / name, os.X_OK), f"{lib / name} is not executable"
    assert (lib / "clustvit").is_symlink() is symlink_install

    node = [ROS2, "run", "clustvit_ros", "clustvit_node"] if HAVE_ROS2_CLI else [str(lib / "clustvit_node")]
    command = f"source {tmp_path}/install/setup.bash && exec {' '.join(node)} --ros-args -r __ns:=/colcon{os.getpid()}"
    log = tmp_path / "node.log"
    proc = processes.start_logged(["bash", "-c", command], log, cwd=tmp_path, env=_environment())
    try:
        processes.wait_for_text(proc, log, "ready: warm-up frame", 120)
        maps = Path(f"/proc/{_node_pid(proc.pid)}/maps").read_text()
        code = processes.ctrl_c(proc)
    finally:
        processes.kill_group(proc)
    assert code == 0, log.read_text()
    assert "clustvit_camvid.safetensors" in log.read_text()  # the packaged model, from the install space
    # the FrameStats type support the node loaded is the workspace's, not the environment's
    assert f"{tmp_path}/" in "".join(line for line in maps.splitlines() if "clustvit_ros__rosidl_typesupport" in line)
