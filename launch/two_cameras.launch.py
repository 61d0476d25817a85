"""Two cameras, two ClustViT nodes: /front/clustvit on front_topic and /rear/clustvit on rear_topic.

    ros2 launch clustvit_ros two_cameras.launch.py \
        front_topic:=/front/camera/color/image_raw rear_topic:=/rear/camera/color/image_raw
    ros2 param set /rear/clustvit merge_budget 1.0     # each node has its own live budget

Each node loads its own copy of the model (memory and compute add up); give them different
merge budgets to spend less on the less important view. Each node chooses its inference thread count
from the load it sees (the `threads` parameter's default, 0: one thread per core the other processes
leave free), so the two share a small CPU without a setting; `threads:=N` fixes N per node.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, GroupAction, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

CAMERAS = ('front', 'rear')


def generate_launch_description():
    share = FindPackageShare('clustvit_ros')
    generic = PathJoinSubstitution([share, 'launch', 'clustvit.launch.py'])
    actions = [
        DeclareLaunchArgument('params_file', default_value=PathJoinSubstitution([share, 'config', 'clustvit.yaml']),
                              description='Parameters of both nodes'),
        DeclareLaunchArgument('rviz', default_value='false', description='One rviz2 per camera'),
        DeclareLaunchArgument('threads', default_value='',
                              description='CPU inference threads of each node (empty: params file, '
                                          'whose 0 follows the load)'),
        DeclareLaunchArgument('autostart', default_value='true',
                              description='Configure and activate both nodes at start-up; false: they start '
                                          'unconfigured (ros2 lifecycle set /front/clustvit configure)'),
    ]
    for camera in CAMERAS:
        actions += [
            DeclareLaunchArgument(f'{camera}_topic', default_value=f'/{camera}/image_raw',
                                  description=f'Image topic of the {camera} camera'),
            DeclareLaunchArgument(f'{camera}_merge_budget', default_value='',
                                  description=f'Initial merge budget of /{camera}/clustvit (empty: params file)'),
            # Scoped, so that one camera's arguments do not leak into the other's.
            GroupAction([IncludeLaunchDescription(
                PythonLaunchDescriptionSource(generic),
                launch_arguments={'namespace': camera,
                                  'camera_topic': LaunchConfiguration(f'{camera}_topic'),
                                  'merge_budget': LaunchConfiguration(f'{camera}_merge_budget'),
                                  'params_file': LaunchConfiguration('params_file'),
                                  'threads': LaunchConfiguration('threads'),
                                  'autostart': LaunchConfiguration('autostart'),
                                  'rviz': LaunchConfiguration('rviz')}.items())], scoped=True),
        ]
    return LaunchDescription(actions)
