"""ROS-free install of the clustvit_ros library (model, data, train, runtime and `clustvit`).

Metadata lives in setup.cfg. The ROS 2 package (node, messages, launch files) is built by
CMakeLists.txt with colcon or `make setup`, never by this file.
"""
from setuptools import setup

setup()
