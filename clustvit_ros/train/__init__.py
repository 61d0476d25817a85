"""train layer of clustvit_ros."""
