"""ClustViT on a Luxonis OAK's colour camera (depthai_ros_driver camera.launch.py, name oak: /oak/rgb/image_raw).

    ros2 launch clustvit_ros oak.launch.py driver:=true rviz:=true

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
                              description='Also start depthai_ros_driver (camera.launch.py)'),
        DeclareLaunchArgument('camera_model', default_value='OAK-D', description='OAK model (for driver:=true)'),
        DeclareLaunchArgument('camera_topic', default_value='/oak/rgb/image_raw',
                              description='Colour image topic of the driver'),
        DeclareLaunchArgument('params_file', default_value=PathJoinSubstitution([share, 'config', 'oak.yaml']),
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
                 PathJoinSubstitution([FindPackageShare('depthai_ros_driver'), 'launch', 'camera.launch.py'])))],
            scoped=True, forwarding=False,
            launch_configurations={'fastdds': LaunchConfiguration('fastdds'),
                                   'camera_model': LaunchConfiguration('camera_model')},
            condition=IfCondition(LaunchConfiguration('driver'))),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(PathJoinSubstitution([share, 'launch', 'clustvit.launch.py'])),
            launch_arguments={'camera_topic': LaunchConfiguration('camera_topic'),
                              'params_file': LaunchConfiguration('params_file')}.items()),
    ])
