"""Launch files, parameter files, labels and the rviz config, checked without ROS 2 `launch`.

Each launch file is visited by test/support/launch_eval.py (stub launch modules that evaluate
arguments, substitutions, conditions, includes and groups like LaunchService). The nodes it would
start are checked: package and executable exist, the remappings point at the driver's real topic,
every parameter (files and overrides) is one the node declares, with the declared type.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from rclpy.parameter import parameter_dict_from_yaml_file

from clustvit_ros.ros import demo_camera
from clustvit_ros.ros.params import PARAMETERS
from support.launch_eval import LAUNCH_DIR, REPO, LaunchEvalError, evaluate

CONFIG = REPO / "config"
LAUNCH_FILES = sorted(p.name for p in LAUNCH_DIR.glob("*.launch.py"))
NODE = ("clustvit_ros", "clustvit_node")
ROS_PARAMS = {"use_sim_time"}  # declared by rclpy itself
DECLARED = {"clustvit_node": {s.name: s for s in PARAMETERS},
            "demo_camera": {s.name: s for s in demo_camera.PARAMETERS}}

# launch file -> (camera topic the node must be remapped to, params file, command-line arguments)
PLATFORMS = {
    "clustvit.launch.py": ("/camera/image_raw", "clustvit.yaml", {}),
    "usb_camera.launch.py": ("/image_raw", "usb_camera.yaml", {}),
    "realsense.launch.py": ("/camera/camera/color/image_raw", "realsense.yaml", {}),
    "zed.launch.py": ("/zed/zed_node/rgb/color/rect/image", "zed.yaml", {}),
    "oak.launch.py": ("/oak/rgb/image_raw", "oak.yaml", {}),
    "jetson.launch.py": ("/camera/image_raw", "jetson.yaml", {}),
    "bag_replay.launch.py": ("/camera/image_raw", "bag_replay.yaml", {}),
    "demo.launch.py": ("/camera/image_raw", "demo.yaml", {"rviz": "false"}),
}
DRIVERS = {  # launch file -> (arguments starting the driver, what must then be started)
    "usb_camera.launch.py": [({"driver": "usb_cam"}, ("node", "usb_cam", "usb_cam_node_exe")),
                             ({"driver": "v4l2_camera"}, ("node", "v4l2_camera", "v4l2_camera_node"))],
    "realsense.launch.py": [({"driver": "true"}, ("include", "realsense2_camera/launch/rs_launch.py"))],
    "zed.launch.py": [({"driver": "true"}, ("include", "zed_wrapper/launch/zed_camera.launch.py"))],
    "oak.launch.py": [({"driver": "true"}, ("include", "depthai_ros_driver/launch/camera.launch.py"))],
}


def check_node_parameters(node) -> dict:
    """Every parameter of `node` (files in order, then overrides) exists with the declared type."""
    declared = DECLARED[node.executable]
    for entry in node.parameters:
        if isinstance(entry, Path):
            assert entry.is_file(), f"{node.source}: params file {entry} does not exist"
            assert CONFIG in entry.parents, f"{entry} is not one of the package's config files"
    values = node.effective_parameters()
    assert values, f"{node.fqn}: no parameter reaches the node (wrong node key in the YAML?)"
    for name, value in values.items():
        if name in ROS_PARAMS:
            continue
        assert name in declared, f"{node.source}: {node.fqn} gets parameter {name!r}, which it does not declare"
        default = declared[name].default
        assert type(value) is type(default) or (isinstance(default, list) and isinstance(value, list)), (
            f"{node.source}: {name}={value!r} is a {type(value).__name__}, the node declares "
            f"{type(default).__name__} (a wrong type stops the node at start-up)")
    return values


def test_every_launch_file_is_covered():
    assert set(LAUNCH_FILES) == set(PLATFORMS) | {"two_cameras.launch.py"}
    assert not (LAUNCH_DIR / ".gitkeep").exists()


@pytest.mark.parametrize("launch_file", sorted(PLATFORMS))
def test_platform_launch_starts_the_node_on_the_driver_topic(launch_file):
    topic, params_file, arguments = PLATFORMS[launch_file]
    launched = evaluate(launch_file, arguments)
    [node] = launched.nodes_of(*NODE)
    assert (REPO / "scripts" / node.executable).is_file()
    assert node.fqn == "/clustvit"
    assert node.remap("image") == topic
    assert node.remap("image/compressed") == topic + "/compressed"
    assert CONFIG / params_file in node.parameters
    values = check_node_parameters(node)
    assert values["use_sim_time"] is (launch_file == "bag_replay.launch.py")
    assert node.environment["FASTDDS_DEFAULT_PROFILES_FILE"] == str(CONFIG / "fastdds.xml")
    assert not [n for n in launched.nodes if n.package == "rviz2"]
    # by default no driver is started (it usually runs in its own launch)
    assert {n.package for n in launched.nodes} <= {"clustvit_ros"} and not launched.foreign_includes


@pytest.mark.parametrize("launch_file,arguments,expected",
                         [(f, a, e) for f, cases in DRIVERS.items() for a, e in cases])
def test_driver_is_started_on_request(launch_file, arguments, expected):
    launched = evaluate(launch_file, arguments)
    if expected[0] == "node":
        [driver] = launched.nodes_of(*expected[1:])
        assert driver.environment["FASTDDS_DEFAULT_PROFILES_FILE"] == str(CONFIG / "fastdds.xml")
    else:
        [(path, configurations, environment)] = launched.foreign_includes
        assert path == expected[1]
        # isolated: none of our arguments (params_file, namespace, ...) reaches the driver's launch
        assert set(configurations) <= {"fastdds", "camera_model"}
        assert environment["FASTDDS_DEFAULT_PROFILES_FILE"] == str(CONFIG / "fastdds.xml")
    assert len(launched.nodes_of(*NODE)) == 1


def test_overrides_reach_the_node_with_the_declared_types():
    launched = evaluate("clustvit.launch.py", {
        "camera_topic": "/cam/image", "namespace": "robot", "merge_budget": "0.25", "device": "cpu",
        "dtype": "bf16", "checkpoint": "/models/x.safetensors", "compressed": "true", "use_sim_time": "true",
        "node_name": "seg", "params_file": str(CONFIG / "jetson.yaml"), "log_level": "debug"})
    [node] = launched.nodes_of(*NODE)
    assert node.fqn == "/robot/seg"
    values = check_node_parameters(node)
    assert values["merge_budget"] == 0.25 and values["device"] == "cpu" and values["dtype"] == "bf16"
    assert values["checkpoint"] == "/models/x.safetensors" and values["compressed"] is True
    assert values["use_sim_time"] is True
    assert node.arguments == ["--ros-args", "--log-level", "debug"]


def test_empty_overrides_keep_the_params_file():
    [node] = evaluate("jetson.launch.py").nodes_of(*NODE)
    values = check_node_parameters(node)
    assert (values["device"], values["dtype"]) == ("cuda", "fp16")


def test_bad_launch_arguments_are_refused():
    with pytest.raises(ValueError, match="merge_budget must be a number"):
        evaluate("clustvit.launch.py", {"merge_budget": "half"})
    with pytest.raises(ValueError, match="rviz must be true or false"):
        evaluate("clustvit.launch.py", {"rviz": "maybe"})
    with pytest.raises(LaunchEvalError, match="not one of"):
        evaluate("usb_camera.launch.py", {"driver": "gstreamer"})
    with pytest.raises(LaunchEvalError, match="declared nowhere"):
        evaluate("clustvit.launch.py", {"merge_budgett": "0.5"})


def test_fastdds_profile_can_be_switched_off():
    for launch_file in ("clustvit.launch.py", "usb_camera.launch.py", "demo.launch.py", "oak.launch.py"):
        launched = evaluate(launch_file, {"fastdds": "false", "rviz": "false"}
                            | ({"driver": "true"} if launch_file == "oak.launch.py" else {}))
        assert all("FASTDDS_DEFAULT_PROFILES_FILE" not in n.environment for n in launched.nodes)
        assert all("FASTDDS_DEFAULT_PROFILES_FILE" not in env for _, _, env in launched.foreign_includes)


def test_rviz_is_remapped_to_the_nodes_real_topics():
    launched = evaluate("realsense.launch.py", {"rviz": "true", "namespace": "robot"})
    [rviz] = launched.nodes_of("rviz2", "rviz2")
    assert rviz.arguments == ["-d", str(CONFIG / "clustvit.rviz")]
    assert dict(rviz.remappings) == {
        "/camera/image_raw": "/camera/camera/color/image_raw",
        "/clustvit/mask_color": "/robot/clustvit/mask_color",
        "/clustvit/overlay": "/robot/clustvit/overlay"}


def test_bag_replay_plays_the_bag_with_the_clock():
    launched = evaluate("bag_replay.launch.py", {"bag": "run1", "rate": "0.5", "loop": "true"})
    assert launched.processes == [["ros2", "bag", "play", "run1", "--clock", "--rate", "0.5", "--loop"]]
    assert evaluate("bag_replay.launch.py").processes == []


def test_demo_launch_starts_the_demo_camera_feeding_the_node():
    launched = evaluate("demo.launch.py", {"source": "/data/video.mp4", "rate": "15"})
    [camera] = launched.nodes_of("clustvit_ros", "demo_camera")
    [node] = launched.nodes_of(*NODE)
    assert (REPO / "scripts" / "demo_camera").is_file()
    assert camera.fqn == "/camera/demo_camera"
    values = check_node_parameters(camera)
    assert values["source"] == "/data/video.mp4" and values["rate"] == 15.0
    assert camera.namespace + "/image_raw" == node.remap("image")
    assert len(launched.nodes_of("rviz2", "rviz2")) == 1  # rviz on by default in the demo


def test_two_cameras_run_two_namespaced_nodes():
    launched = evaluate("two_cameras.launch.py", {
        "front_topic": "/front/color/image_raw", "rear_merge_budget": "0.5"})
    front, rear = launched.nodes_of(*NODE)
    assert (front.fqn, rear.fqn) == ("/front/clustvit", "/rear/clustvit")
    assert front.remap("image") == "/front/color/image_raw"
    assert rear.remap("image") == "/rear/image_raw"
    front_values, rear_values = check_node_parameters(front), check_node_parameters(rear)
    assert front_values["merge_budget"] == 1.0 and rear_values["merge_budget"] == 0.5
    rviz = evaluate("two_cameras.launch.py", {"rviz": "true"}).nodes_of("rviz2", "rviz2")
    assert sorted(dict(r.remappings)["/clustvit/overlay"] for r in rviz) == [
        "/front/clustvit/overlay", "/rear/clustvit/overlay"]


PARAM_FILES = sorted(p.name for p in CONFIG.glob("*.yaml"))


@pytest.mark.parametrize("name", PARAM_FILES)
def test_every_params_file_parses_and_holds_only_declared_parameters(name):
    path = CONFIG / name
    executable = "demo_camera" if name == "demo_camera.yaml" else "clustvit_node"
    raw = yaml.safe_load(path.read_text())
    assert list(raw) == ["/**"], f"{name}: use the /** wildcard so renamed or namespaced nodes get it"
    for fqn in ("/clustvit", "/some/namespace/renamed"):
        values = parameter_dict_from_yaml_file(str(path), use_wildcard=True, target_nodes=[fqn])
        assert values
        for key, msg in values.items():
            assert key in DECLARED[executable] or key in ROS_PARAMS, f"{name}: unknown parameter {key!r}"
    from support.launch_eval import NodeSpec
    check_node_parameters(NodeSpec("clustvit_ros", executable, "clustvit", "/", [], [path], [], {}, name))


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


def test_real_launch_service_runs_the_demo(tmp_path):
    """With a ROS 2 installation: the real LaunchService starts demo.launch.py and the node publishes."""
    pytest.importorskip("launch_ros")
    import threading

    import rclpy
    from launch import LaunchDescription, LaunchService
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    from rclpy.context import Context

    from support.models import make_checkpoint
    from support.ros_harness import Harness

    checkpoint = make_checkpoint(tmp_path / "tiny.safetensors")
    service = LaunchService(argv=[], noninteractive=True)
    service.include_launch_description(LaunchDescription([IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(LAUNCH_DIR / "demo.launch.py")),
        launch_arguments={"rviz": "false", "rate": "5.0", "checkpoint": str(checkpoint)}.items())]))
    thread = threading.Thread(target=service.run, daemon=True)
    context = Context()
    rclpy.init(context=context)
    harness = Harness(context, "/clustvit", outputs=("stats",))
    thread.start()
    try:
        harness.wait_for(lambda: harness.messages("stats"), 120.0, "FrameStats from the launched node")
    finally:
        service.shutdown()
        thread.join(timeout=30)
        harness.close()
        rclpy.shutdown(context=context)
