"""The clustvit node's own main(), plus a record of every frame's engine stage times (benchmarks).

    node_runner.py --engine-times FILE.json --ros-args -r __ns:=/x -p checkpoint:=...

Runs exactly what `ros2 run clustvit_ros clustvit_node` runs; the only addition is that
Engine.run also stores (preprocess_ms, inference_ms, postprocess_ms) per frame, keyed by the
float32 inference_ms its FrameStats carries. The record is written to FILE.json when the node exits
(SIGINT). bench_node.py subtracts these engine times from the end-to-end latency: node overhead.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--engine-times":
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[2])
    from rosbench import record_engine_times  # noqa: E402  (environment inherited from the bench)

    from clustvit_ros.ros.main import main as node_main
    from clustvit_ros.runtime.engine import Engine

    times: dict[float, tuple[float, float, float]] = {}
    record_engine_times(Engine, times)
    try:
        return node_main([argv[0], *argv[3:]])
    finally:
        out.write_text(json.dumps(times))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
