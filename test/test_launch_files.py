"""Parameter files, label files and the rviz config the launch files use, checked as files.

The launch files themselves run for real in test/test_launch_run.py (`ros2 launch`) and
test/test_launch_service.py (the launch library's LaunchService).
"""
from __future__ import annotations

import sys

import pytest
import yaml
from rclpy.parameter import parameter_dict_from_yaml_file, parameter_value_to_python

from clustvit_ros.ros import demo_camera
from clustvit_ros.ros.params import PARAMETERS
from support.processes import REPO

CONFIG = REPO / "config"
LAUNCH_DIR = REPO / "launch"
ROS_PARAMS = {"use_sim_time"}  # declared by rclpy itself
DECLARED = {"clustvit_node": {s.name: s for s in PARAMETERS},
            "demo_camera": {s.name: s for s in demo_camera.PARAMETERS}}


PARAM_FILES = sorted(p.name for p in CONFIG.glob("*.yaml"))


@pytest.mark.parametrize("name", PARAM_FILES)
def test_every_params_file_parses_and_holds_only_declared_parameters(name):
    path = CONFIG / name
    executable = "demo_camera" if name == "demo_camera.yaml" else "clustvit_node"
    raw = yaml.safe_load(path.read_text())
    assert list(raw) == ["/**"], f"{name}: use the /** wildcard so renamed or namespaced nodes get it"
    declared = DECLARED[executable]
    for fqn in ("/clustvit", "/some/namespace/renamed"):
        values = parameter_dict_from_yaml_file(str(path), use_wildcard=True, target_nodes=[fqn])
        assert values
        for key, msg in values.items():
            if key in ROS_PARAMS:
                continue
            assert key in declared, f"{name}: unknown parameter {key!r}"
            value, default = parameter_value_to_python(msg.value), declared[key].default
            assert type(value) is type(default) or isinstance(default, list) and isinstance(value, list), (
                f"{name}: {key}={value!r} is a {type(value).__name__}, the node declares "
                f"{type(default).__name__} (a wrong type stops the node at start-up)")


def test_reference_params_file_lists_every_parameter_with_its_default():
    values = yaml.safe_load((CONFIG / "clustvit.yaml").read_text())["/**"]["ros__parameters"]
    assert values == {s.name: s.default for s in PARAMETERS}


def test_label_files_agree_with_the_palettes():
    from clustvit_ros.data.palettes import CLASS_INFOS, read_labels_file

    sys.path.insert(0, str(REPO / "tools"))
    try:
        import make_labels
    finally:
        sys.path.remove(str(REPO / "tools"))
    for path, text in make_labels.expected_files().items():
        assert path.read_text() == text, f"{path.name} is stale: run python tools/make_labels.py"
    for name, info in CLASS_INFOS.items():
        labels = read_labels_file(CONFIG / "labels" / f"{name}.yaml", info.num_classes)
        assert labels.names == info.names and (labels.palette == info.palette).all()


def rviz_image_displays() -> list[dict]:
    config = yaml.safe_load((CONFIG / "clustvit.rviz").read_text())
    return [d for d in config["Visualization Manager"]["Displays"] if d["Class"] == "rviz_default_plugins/Image"]


def test_rviz_config_shows_the_camera_and_the_nodes_outputs():
    from clustvit_ros.ros.node import NODE_NAME

    launch_module = (LAUNCH_DIR / "clustvit.launch.py").read_text()
    topics = {d["Topic"]["Value"] for d in rviz_image_displays()}
    assert topics == {"/camera/image_raw", f"/{NODE_NAME}/mask_color", f"/{NODE_NAME}/overlay"}
    assert "RVIZ_CAMERA_TOPIC = '/camera/image_raw'" in launch_module
    assert f"RVIZ_NODE = '/{NODE_NAME}'" in launch_module
    # best effort subscribes to reliable and best-effort publishers alike (no QoS mismatch)
    assert {d["Topic"]["Reliability Policy"] for d in rviz_image_displays()} == {"Best Effort"}
