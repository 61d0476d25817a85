"""Run one of clustvit_ros's launch files with the launch library's LaunchService, in the main thread
of this process (LaunchService refuses to run in any other thread) and non-interactively, as a
supervisor (systemd, a test harness) runs it: SIGINT to this process stops everything.

    python launch_service_main.py demo.launch.py rviz:=false checkpoint:=/path/model.safetensors

The exit code is LaunchService.run()'s.
"""
import sys
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription, LaunchService
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource


def main(argv: list[str]) -> int:
    launch_file, *arguments = argv
    path = Path(get_package_share_directory("clustvit_ros")) / "launch" / launch_file
    service = LaunchService(argv=arguments, noninteractive=True)
    service.include_launch_description(LaunchDescription([IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(path)),
        launch_arguments=[tuple(argument.split(":=", 1)) for argument in arguments])]))
    return service.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
