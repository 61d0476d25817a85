"""The demo: the demo camera (packaged CamVid road frames, synthetic robot scenes, an image folder or a
video) -> ClustViT -> rviz.

    ros2 launch clustvit_ros demo.launch.py
    ros2 launch clustvit_ros demo.launch.py source:=/path/to/video.mp4 rate:=15.0 rviz:=false

The camera publishes /camera/image_raw; the node /clustvit/... Change the budget while it runs:
`ros2 param set /clustvit merge_budget 0.5`. Every argument of clustvit.launch.py also applies here.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    share = FindPackageShare('clustvit_ros')
    return LaunchDescription([
        DeclareLaunchArgument('source', default_value='camvid',
                              description='camvid (packaged CamVid road frames), synthetic, a folder of '
                                          'images or a video file'),
        DeclareLaunchArgument('rate', default_value='10.0', description='Camera frames per second'),
        DeclareLaunchArgument('rviz', default_value='true', description='Start rviz2'),
        DeclareLaunchArgument('fastdds', default_value='true', description='Load config/fastdds.xml'),
        SetEnvironmentVariable('FASTDDS_DEFAULT_PROFILES_FILE',
                               PathJoinSubstitution([share, 'config', 'fastdds.xml']),
                               condition=IfCondition(LaunchConfiguration('fastdds'))),
        Node(package='clustvit_ros', executable='demo_camera', name='demo_camera', namespace='camera',
             parameters=[PathJoinSubstitution([share, 'config', 'demo_camera.yaml']),
                         {'source': LaunchConfiguration('source'),
                          'rate': ParameterValue(LaunchConfiguration('rate'), value_type=float)}],
             output='screen', emulate_tty=True),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(PathJoinSubstitution([share, 'launch', 'clustvit.launch.py'])),
            launch_arguments={'camera_topic': '/camera/image_raw',
                              'params_file': PathJoinSubstitution([share, 'config', 'demo.yaml']),
                              'rviz': LaunchConfiguration('rviz')}.items()),
    ])
