"""Helpers shared by the tests (processes, ROS waiting loops)."""
