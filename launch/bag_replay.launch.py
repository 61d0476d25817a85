"""ClustViT on a recorded bag: `ros2 bag play --clock` plus the node on sim time.

    ros2 launch clustvit_ros bag_replay.launch.py bag:=my_run camera_topic:=/camera/image_raw rviz:=true
    ros2 launch clustvit_ros bag_replay.launch.py bag:=my_run rate:=0.5 loop:=true

Record the outputs alongside with `ros2 bag record /clustvit/stats /clustvit/overlay ...`, or
segment a bag offline, frame by frame, with `clustvit bag IN.mcap OUT.mcap --topic ...`.
Every argument of clustvit.launch.py (merge_budget, device, namespace, ...) also applies here.
"""
from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription,
                            OpaqueFunction, SetEnvironmentVariable)
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare


def _player(context):
    bag = LaunchConfiguration('bag').perform(context)
    if not bag:
        return []  # play it yourself: ros2 bag play <bag> --clock
    cmd = ['ros2', 'bag', 'play', bag, '--clock', '--rate', LaunchConfiguration('rate').perform(context)]
    if LaunchConfiguration('loop').perform(context).lower() in ('true', '1'):
        cmd.append('--loop')
    return [ExecuteProcess(cmd=cmd, output='screen')]


def generate_launch_description():
    share = FindPackageShare('clustvit_ros')
    return LaunchDescription([
        DeclareLaunchArgument('bag', default_value='', description='Bag to play (empty: play it yourself)'),
        DeclareLaunchArgument('rate', default_value='1.0', description='Playback rate'),
        DeclareLaunchArgument('loop', default_value='false', description='Play the bag in a loop'),
        DeclareLaunchArgument('camera_topic', default_value='/camera/image_raw', description='Image topic in the bag'),
        DeclareLaunchArgument('params_file', default_value=PathJoinSubstitution([share, 'config', 'bag_replay.yaml']),
                              description='Node parameters'),
        DeclareLaunchArgument('fastdds', default_value='true', description='Load config/fastdds.xml'),
        SetEnvironmentVariable('FASTDDS_DEFAULT_PROFILES_FILE',
                               PathJoinSubstitution([share, 'config', 'fastdds.xml']),
                               condition=IfCondition(LaunchConfiguration('fastdds'))),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(PathJoinSubstitution([share, 'launch', 'clustvit.launch.py'])),
            launch_arguments={'camera_topic': LaunchConfiguration('camera_topic'),
                              'params_file': LaunchConfiguration('params_file'),
                              'use_sim_time': 'true'}.items()),
        OpaqueFunction(function=_player),
    ])
