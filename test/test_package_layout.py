"""The package installs as a ROS 2 package and as a ROS-free library, with the layering rule held."""
from __future__ import annotations

import ast
import configparser
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

from support.processes import REPO

ROS_FREE = ("model", "data", "train", "runtime")
ROS_MODULES = ("rclpy", "rosidl_runtime_py", "sensor_msgs", "std_msgs", "diagnostic_msgs",
               "builtin_interfaces", "rcl_interfaces", "ament_index_python", "launch", "launch_ros",
               "clustvit_ros.ros", "clustvit_ros.msg")


def _imports(path: Path) -> set[str]:
    """Absolute names of the modules `path` imports (relative imports resolved)."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("layer", ROS_FREE)
def test_ros_free_layers_import_no_ros(layer):
    for path in sorted((REPO / "clustvit_ros" / layer).rglob("*.py")):
        for name in _imports(path):
            bad = any(name == m or name.startswith(m + ".") for m in ROS_MODULES)
            assert not bad, f"{path.relative_to(REPO)} imports {name}: {layer}/ must stay ROS-free"


def test_ros_free_layers_import_with_ros_absent():
    """Importing every module of model/ data/ train/ runtime/ works when rclpy cannot be imported."""
    code = (
        "import sys, pkgutil, importlib\n"
        "for m in ('rclpy', 'sensor_msgs', 'std_msgs', 'rosidl_runtime_py'): sys.modules[m] = None\n"
        "import clustvit_ros\n"
        f"for layer in {ROS_FREE!r}:\n"
        "    pkg = importlib.import_module('clustvit_ros.' + layer)\n"
        "    for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        importlib.import_module(info.name)\n"
        "importlib.import_module('clustvit_ros.cli')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_share_directory_holds_launch_config_and_models():
    from ament_index_python.packages import get_package_share_directory

    share = Path(get_package_share_directory("clustvit_ros"))
    for name in ("launch", "config", "models", "package.xml"):
        assert (share / name).exists(), f"{name} is not installed in {share}"
    assert (share / "config" / "fastdds.xml").is_file()


def test_generated_message_and_our_modules_share_one_package():
    code = "from clustvit_ros.msg import FrameStats; import clustvit_ros.model, clustvit_ros.ros; print('ok')"
    # From a neutral directory: only the installed package is on the path.
    result = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True)
    assert result.stdout.strip() == "ok", result.stderr


def test_package_xml_declares_every_ros_package_the_node_and_launch_files_import():
    """rosdep installs what package.xml names: a ROS package imported but not declared is missing on
    a robot. (The message build's own dependencies are checked by the build itself.)"""
    from ament_index_python.packages import get_packages_with_prefixes

    root = ET.parse(REPO / "package.xml").getroot()
    declared = {e.text for e in root if e.tag in ("depend", "exec_depend")}
    sources = [*(REPO / "clustvit_ros" / "ros").glob("*.py"), *(REPO / "launch").glob("*.launch.py")]
    imported = {name.split(".")[0] for path in sources for name in _imports(path)}
    ros_packages = imported & set(get_packages_with_prefixes()) - {"clustvit_ros"}
    assert {"rclpy", "sensor_msgs", "std_msgs"} <= ros_packages  # the index knows the ROS packages
    assert ros_packages <= declared, f"imported but not in package.xml: {sorted(ros_packages - declared)}"


def test_versions_agree():
    xml_version = ET.parse(REPO / "package.xml").getroot().findtext("version")
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    assert cfg["metadata"]["version"] == xml_version
    import clustvit_ros

    assert clustvit_ros.__version__ == xml_version


def test_pip_wheel_builds_the_ros_free_library(tmp_path):
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(REPO)],
        capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = tmp_path.glob("clustvit_ros-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for layer in ROS_FREE:
        assert f"clustvit_ros/{layer}/__init__.py" in names
    assert "clustvit_ros/cli.py" in names
    assert not [n for n in names if n.startswith(("clustvit_ros/ros/", "clustvit_ros/msg/"))]
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "clustvit = clustvit_ros.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_cli_without_the_ros_layer_offers_the_ros_free_commands():
    """A pip-installed library has no clustvit_ros.ros: `clustvit` still works, without `bag`."""
    code = ("import sys; sys.modules['clustvit_ros.ros'] = None\n"
            "from clustvit_ros.cli import build_parser\n"
            "print(' '.join(build_parser()._subparsers._group_actions[0].choices))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    commands = result.stdout.split()
    assert "bag" not in commands and {"flops", "convert"} <= set(commands)
