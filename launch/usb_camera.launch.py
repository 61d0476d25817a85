"""ClustViT on a USB/V4L2 webcam: usb_cam or v4l2_camera, both publishing /image_raw.

    ros2 launch clustvit_ros usb_camera.launch.py driver:=usb_cam video_device:=/dev/video0 rviz:=true
    ros2 launch clustvit_ros usb_camera.launch.py                    # the driver runs elsewhere

Every argument of clustvit.launch.py (merge_budget, device, namespace, ...) also applies here.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def _driver_is(name):
    return IfCondition(PythonExpression(["'", LaunchConfiguration('driver'), "' == '", name, "'"]))


def generate_launch_description():
    share = FindPackageShare('clustvit_ros')
    return LaunchDescription([
        DeclareLaunchArgument('driver', default_value='none', choices=['none', 'usb_cam', 'v4l2_camera'],
                              description='Camera driver to start as well (none: it runs elsewhere)'),
        DeclareLaunchArgument('video_device', default_value='/dev/video0', description='V4L2 device'),
        DeclareLaunchArgument('camera_topic', default_value='/image_raw',
                              description='Image topic of the driver (usb_cam and v4l2_camera: /image_raw)'),
        DeclareLaunchArgument('params_file', default_value=PathJoinSubstitution([share, 'config', 'usb_camera.yaml']),
                              description='Node parameters'),
        DeclareLaunchArgument('fastdds', default_value='true', description='Load config/fastdds.xml'),
        SetEnvironmentVariable('FASTDDS_DEFAULT_PROFILES_FILE',
                               PathJoinSubstitution([share, 'config', 'fastdds.xml']),
                               condition=IfCondition(LaunchConfiguration('fastdds'))),
        Node(package='usb_cam', executable='usb_cam_node_exe', name='usb_cam', output='screen',
             parameters=[{'video_device': LaunchConfiguration('video_device')}],
             condition=_driver_is('usb_cam')),
        Node(package='v4l2_camera', executable='v4l2_camera_node', name='v4l2_camera', output='screen',
             parameters=[{'video_device': LaunchConfiguration('video_device')}],
             condition=_driver_is('v4l2_camera')),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(PathJoinSubstitution([share, 'launch', 'clustvit.launch.py'])),
            launch_arguments={'camera_topic': LaunchConfiguration('camera_topic'),
                              'params_file': LaunchConfiguration('params_file')}.items()),
    ])
