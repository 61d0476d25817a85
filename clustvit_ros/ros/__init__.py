"""ros layer of clustvit_ros."""
