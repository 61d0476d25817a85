"""runtime layer of clustvit_ros."""
