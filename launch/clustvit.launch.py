"""The ClustViT node on any camera topic; every other launch file of the package includes this one.

    ros2 launch clustvit_ros clustvit.launch.py camera_topic:=/my_camera/image_raw rviz:=true
    ros2 launch clustvit_ros clustvit.launch.py namespace:=front merge_budget:=0.5 device:=cuda dtype:=fp16
    ros2 launch clustvit_ros clustvit.launch.py latency_target_ms:=80   # merge more while frames would be late
    ros2 launch clustvit_ros clustvit.launch.py autostart:=false   # then: ros2 lifecycle set /clustvit configure

Outputs: <namespace>/<node_name>/{mask,mask_color,overlay,stats,gflops,latency_ms} and /diagnostics.
Empty checkpoint/merge_budget/latency_target_ms/device/dtype/compressed/threads keep the value of the
params file (or the node's default); a value given here overrides it. The node is a lifecycle node: autostart:=true (the
default) configures and activates it at start-up; with autostart:=false it starts unconfigured and
waits for `ros2 lifecycle set` or a lifecycle manager.
"""
from ament_index_python.packages import PackageNotFoundError, get_package_prefix
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.logging import get_logger
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = 'clustvit_ros'
# The topics config/clustvit.rviz displays; the rviz node is remapped to this launch's real ones.
RVIZ_CAMERA_TOPIC = '/camera/image_raw'
RVIZ_NODE = '/clustvit'


def _flag(name, value):
    lowered = value.strip().lower()
    if lowered in ('true', '1', 'yes', 'on'):
        return True
    if lowered in ('false', '0', 'no', 'off'):
        return False
    raise ValueError(f"launch argument {name} must be true or false, got '{value}'")


def _number(name, value, kind):
    try:
        return kind(value)
    except ValueError:
        what = 'an integer' if kind is int else 'a number'
        raise ValueError(f"launch argument {name} must be {what}, got '{value}'") from None


def _installed(package):
    try:
        get_package_prefix(package)
    except PackageNotFoundError:
        return False
    return True


def _absolute(topic, namespace):
    if topic.startswith('/'):
        return topic
    return '/' + '/'.join(part for part in (namespace.strip('/'), topic) if part)


def _launch_setup(context):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    namespace, name, camera_topic = arg('namespace'), arg('node_name'), arg('camera_topic')
    sim_time = _flag('use_sim_time', arg('use_sim_time'))
    overrides = {'use_sim_time': sim_time, 'autostart': _flag('autostart', arg('autostart'))}
    for key in ('checkpoint', 'device', 'dtype'):
        if arg(key):
            overrides[key] = arg(key)
    for key in ('merge_budget', 'latency_target_ms'):
        if arg(key):
            overrides[key] = _number(key, arg(key), float)
    if arg('threads'):
        overrides['threads'] = _number('threads', arg('threads'), int)
    if arg('compressed'):
        overrides['compressed'] = _flag('compressed', arg('compressed'))
    parameters = [arg('params_file')] if arg('params_file') else []
    parameters.append(overrides)

    actions = [Node(
        package=PACKAGE, executable='clustvit_node', name=name, namespace=namespace,
        parameters=parameters,
        remappings=[('image', camera_topic), ('image/compressed', camera_topic + '/compressed')],
        arguments=['--ros-args', '--log-level', arg('log_level')],
        output='screen', emulate_tty=True)]

    if _flag('rviz', arg('rviz')):
        if _installed('rviz2'):
            actions.append(_rviz(name, namespace, camera_topic, sim_time, arg('rviz_config')))
        else:  # a headless robot: the node still runs
            get_logger('clustvit.launch').warning(
                'rviz:=true but rviz2 is not installed: going on without it '
                '(install ros-$ROS_DISTRO-rviz2, or pass rviz:=false)')
    return actions


def _rviz(name, namespace, camera_topic, sim_time, config):
    """rviz2 showing the camera and the node's outputs; config/clustvit.rviz names the default topics."""
    node_fqn = _absolute(name, namespace)
    return Node(
        package='rviz2', executable='rviz2', name='rviz_' + name, namespace=namespace,
        arguments=['-d', config],
        parameters=[{'use_sim_time': sim_time}],
        remappings=[(RVIZ_CAMERA_TOPIC, _absolute(camera_topic, namespace)),
                    (RVIZ_NODE + '/mask_color', node_fqn + '/mask_color'),
                    (RVIZ_NODE + '/overlay', node_fqn + '/overlay')],
        output='log')


def generate_launch_description():
    share = FindPackageShare(PACKAGE)
    arguments = [
        ('camera_topic', '/camera/image_raw', 'Image topic to segment (node input `image`; '
         '`image/compressed` is remapped to <camera_topic>/compressed)'),
        ('namespace', '', 'Namespace of the node'),
        ('node_name', 'clustvit', 'Name of the node'),
        ('params_file', PathJoinSubstitution([share, 'config', 'clustvit.yaml']),
         'Node parameters (YAML with a `/**:` key); empty = the node defaults'),
        ('checkpoint', '', 'Packaged model name (camvid, synthetic) or .safetensors path; empty = the params '
                           'file / camvid'),
        ('merge_budget', '', 'Initial merge budget in [0, 1]; empty = the params file'),
        ('latency_target_ms', '', 'Initial latency target in ms (0 = off): the node merges more than '
         'merge_budget only while frames would be later than this; empty = the params file'),
        ('device', '', 'auto, cpu, cuda or cuda:N; empty = the params file'),
        ('dtype', '', 'fp32, fp16 or bf16; empty = the params file'),
        ('compressed', '', 'true: segment <camera_topic>/compressed (JPEG/PNG); empty = the params file'),
        ('threads', '', 'CPU inference threads; empty = the params file (0: one per core the other '
         'processes leave free)'),
        ('use_sim_time', 'false', 'Use /clock (bag replay with --clock)'),
        ('autostart', 'true', 'Configure and activate the node at start-up; false: it starts unconfigured '
         'and waits for `ros2 lifecycle set` or a lifecycle manager'),
        ('rviz', 'false', 'Also start rviz2 showing the camera, the coloured mask and the overlay'),
        ('rviz_config', PathJoinSubstitution([share, 'config', 'clustvit.rviz']), 'rviz2 config'),
        ('fastdds', 'true', 'Load config/fastdds.xml (32 MiB shared-memory segment for camera-sized '
         'messages) into the processes this launch starts'),
        ('log_level', 'info', 'Log level of the node'),
    ]
    return LaunchDescription([
        *[DeclareLaunchArgument(name, default_value=default, description=text)
          for name, default, text in arguments],
        SetEnvironmentVariable('FASTDDS_DEFAULT_PROFILES_FILE',
                               PathJoinSubstitution([share, 'config', 'fastdds.xml']),
                               condition=IfCondition(LaunchConfiguration('fastdds'))),
        OpaqueFunction(function=_launch_setup),
    ])
