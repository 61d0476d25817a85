"""ClustViT on an NVIDIA Jetson: CUDA with fp16 activations (config/jetson.yaml), any camera topic.

    ros2 launch clustvit_ros jetson.launch.py camera_topic:=/camera/camera/color/image_raw

Without a usable GPU the node falls back to the CPU with a warning. Combine with a driver by
starting it separately, e.g. `ros2 launch realsense2_camera rs_launch.py`. Every argument of
clustvit.launch.py (merge_budget, namespace, rviz, ...) also applies here.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    share = FindPackageShare('clustvit_ros')
    return LaunchDescription([
        DeclareLaunchArgument('camera_topic', default_value='/camera/image_raw', description='Image topic'),
        DeclareLaunchArgument('params_file', default_value=PathJoinSubstitution([share, 'config', 'jetson.yaml']),
                              description='Node parameters (device: cuda, dtype: fp16)'),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(PathJoinSubstitution([share, 'launch', 'clustvit.launch.py'])),
            launch_arguments={'camera_topic': LaunchConfiguration('camera_topic'),
                              'params_file': LaunchConfiguration('params_file')}.items()),
    ])
