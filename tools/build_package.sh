#!/usr/bin/env bash
# Build this package (FrameStats message + Python code + executables + share files) with its own
# CMakeLists.txt and install it straight into a venv that holds the ROS 2 wheels. Nothing to source
# afterwards. Never `pip install .` into that venv: pip would delete the generated messages.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=$(cd "${1:-$repo/.venv}" && pwd)
build="$repo/build/clustvit_ros"
log="$repo/build/clustvit_ros.log"
mkdir -p "$build"
export AMENT_PREFIX_PATH="$venv" CMAKE_PREFIX_PATH="$venv"
if ! {
  cmake -S "$repo" -B "$build" -DCMAKE_INSTALL_PREFIX="$venv" -DBUILD_TESTING=OFF \
        -DPython3_EXECUTABLE="$venv/bin/python3" -DPython3_FIND_VIRTUALENV=ONLY &&
  cmake --build "$build" -j "$(nproc)" &&
  cmake --install "$build"
} >"$log" 2>&1; then
  tail -n 40 "$log"
  echo "error: building clustvit_ros failed; full log in $log" >&2
  exit 1
fi
echo "built clustvit_ros into $venv (log: $log)"
