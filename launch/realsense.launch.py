"""ClustViT on an Intel RealSense D4xx colour stream (realsense2_camera 4.5x:
/<camera_namespace>/<camera_name>/color/image_raw = /camera/camera/color/image_raw by default).

    ros2 launch clustvit_ros realsense.launch.py driver:=true rviz:=true
    ros2 launch clustvit_ros realsense.launch.py camera_topic:=/camera/color/image_raw   # older wrappers

Every argument of clustvit.launch.py (merge_budget, device, namespace, ...) also applies here.
"""
from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, GroupAction, IncludeLaunchDescription,
                            SetEnvironmentVariable)
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    share = FindPackageShare('clustvit_ros')
    fastdds_xml = PathJoinSubstitution([share, 'config', 'fastdds.xml'])
    return LaunchDescription([
        DeclareLaunchArgument('driver', default_value='false',
                              description='Also start realsense2_camera (rs_launch.py)'),
        DeclareLaunchArgument('camera_topic', default_value='/camera/camera/color/image_raw',
                              description='Colour image topic of the driver'),
        DeclareLaunchArgument('params_file', default_value=PathJoinSubstitution([share, 'config', 'realsense.yaml']),
                              description='Node parameters'),
        DeclareLaunchArgument('fastdds', default_value='true', description='Load config/fastdds.xml'),
        SetEnvironmentVariable('FASTDDS_DEFAULT_PROFILES_FILE', fastdds_xml,
                               condition=IfCondition(LaunchConfiguration('fastdds'))),
        # The driver's own launch file, isolated (forwarding=False): it must not see our params_file,
        # namespace, ... nor we its arguments. Newer launch versions also reset the environment there,
        # so the Fast DDS profile is set again inside the group.
        GroupAction(
            [SetEnvironmentVariable('FASTDDS_DEFAULT_PROFILES_FILE', fastdds_xml,
                                    condition=IfCondition(LaunchConfiguration('fastdds'))),
             IncludeLaunchDescription(PythonLaunchDescriptionSource(
                 PathJoinSubstitution([FindPackageShare('realsense2_camera'), 'launch', 'rs_launch.py'])))],
            scoped=True, forwarding=False,
            launch_configurations={'fastdds': LaunchConfiguration('fastdds')},
            condition=IfCondition(LaunchConfiguration('driver'))),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(PathJoinSubstitution([share, 'launch', 'clustvit.launch.py'])),
            launch_arguments={'camera_topic': LaunchConfiguration('camera_topic'),
                              'params_file': LaunchConfiguration('params_file')}.items()),
    ])
